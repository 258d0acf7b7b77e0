//! Work-order flows that span the policy, GitLab and the database: filing a
//! work order and deciding on one. Pages and the API both call these, so
//! the rules are checked the same way whichever door a request comes in by.
//! The filing checks live here (fields, rule 1, approvers left), and so
//! does what a refusal of the state machine means at the edge (403, 409 or
//! 422 naming the input).

use super::clusters::{LOOK_DEADLINE, cluster_client, kube_error, stage_deployment};
use crate::app::AppState;
use crate::auth::Action;
use crate::db::accounts::Account;
use crate::db::approvers::approvers_of;
use crate::db::audit::AuditActor;
use crate::db::release_items::{self, ReleaseItem};
use crate::db::work_order_views::{self, WorkOrder, WorkOrderDetail};
use crate::db::work_orders::{
    self, Filing, NewWorkOrder, OpenOrder, Source, StageRecord, StageTarget,
};
use crate::domain::release_item::Strategy;
use crate::domain::text::{check_free_form, check_single_line};
use crate::domain::work_order::{Command, MAX_NOTE_LEN, decide, refusal};
use crate::engine::{canary_routing, rollouts_not_served};
use crate::error::{Error, Result};
use crate::kube::{ClusterClient, KubeError};

use crate::kube::deployment::{self, Progress};
use k8s_openapi::api::core::v1::PodTemplateSpec;

/// Order `id` with its decisions, stage runs, timeline and approvers, if
/// `actor` may see it (the 404 of a missing order otherwise). The order is
/// read once per `board_version` (read with the actor's session or token;
/// `None` reads it afresh, see `OrderReads::detail`) and the approvers
/// come from the policy's cache.
pub async fn detail(
    state: &AppState,
    actor: &Account,
    board_version: Option<i64>,
    id: i64,
) -> Result<WorkOrderDetail> {
    let found = state.orders.detail(&state.db, board_version, id).await;
    let mut d = state
        .policy
        .visible(actor, found.map(|d| WorkOrderDetail::clone(&d)))?;
    let approvers = state
        .policy
        .approvers_at(&state.db, &d.order.node_path)
        .await?;
    if let Some((node, names)) = approvers.as_ref() {
        d.approvers_node = Some(node.clone());
        d.approvers = names.iter().cloned().collect();
    }
    Ok(d)
}

/// What a person or CI asks to file.
#[derive(Clone, Copy)]
pub struct OrderRequest<'a> {
    pub release_item_id: i64,
    pub version: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    /// Filed as a hotfix, for this reason (one line).
    pub hotfix_reason: Option<&'a str>,
}

/// Files a work order: the actor must be engineer or owner on the item's
/// node, the item must have no open order (rule 1), enough approvers must
/// remain once the creator is excluded, and the version must be a tag of
/// the item's GitLab project (rule 2).
pub async fn file_work_order(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    asked: &OrderRequest<'_>,
) -> Result<WorkOrder> {
    let OrderRequest {
        release_item_id,
        version,
        title,
        description,
        hotfix_reason,
    } = *asked;
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
        hotfix_reason: hotfix_reason.map(str::trim),
    };
    check_filing(state, &new, actor).await?;
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
    match work_orders::file(&state.db, &new, actor, who).await? {
        Filing::Filed(order) => Ok(*order),
        // Filed meanwhile by someone else.
        Filing::AlreadyOpen => {
            let open = work_orders::open_order_of(&state.db.pool, item.id)
                .await?
                .unwrap_or(OpenOrder {
                    id: 0,
                    title: "?".into(),
                });
            Err(already_open(&item, &open))
        }
    }
}

/// Checks what can be checked before asking GitLab: the fields, rule 1,
/// and that enough approvers remain once the creator is excluded.
async fn check_filing(state: &AppState, new: &NewWorkOrder<'_>, creator: &Account) -> Result<()> {
    check_fields(new)?;
    if let Some(open) = work_orders::open_order_of(&state.db.pool, new.item.id).await? {
        return Err(already_open(new.item, &open));
    }
    if new.item.stages.is_empty() {
        return Err(Error::Conflict(format!(
            "release item {} has no stages yet",
            new.item.name
        )));
    }
    let approvers = approvers_of(&state.db.pool, &new.item.node_path).await?;
    let (from, owners) = approvers.unwrap_or_default();
    let remaining = owners.iter().filter(|o| **o != creator.name).count() as i64;
    if remaining < new.item.required_approvals {
        return Err(Error::Conflict(format!(
            "{} approval{} needed but only {remaining} approver{} other than you: the owners of {} approve releases of {}",
            new.item.required_approvals,
            if new.item.required_approvals == 1 {
                " is"
            } else {
                "s are"
            },
            if remaining == 1 { "" } else { "s" },
            if from.is_empty() {
                new.item.node_path.as_str()
            } else {
                from.as_str()
            },
            new.item.name
        )));
    }
    Ok(())
}

/// The title, description and version of a new order.
fn check_fields(new: &NewWorkOrder<'_>) -> Result<()> {
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(Error::validation(
            "title",
            "give a title of at most 200 characters",
        ));
    }
    if new.description.chars().count() > 20_000 {
        return Err(Error::validation(
            "description",
            "the description is longer than 20000 characters",
        ));
    }
    if new.version.trim().is_empty() {
        return Err(Error::validation(
            "version",
            "pick a version (a GitLab tag)",
        ));
    }
    check_single_line("version", new.version).map_err(|m| Error::validation("version", m))?;
    if let Some(reason) = new.hotfix_reason {
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(Error::validation(
                "hotfix_reason",
                "a hotfix needs its reason: one line of at most 200 characters",
            ));
        }
        check_single_line("hotfix_reason", reason)
            .map_err(|m| Error::validation("hotfix_reason", m))?;
    }
    check_single_line("title", title).map_err(|m| Error::validation("title", m))?;
    check_free_form("description", new.description)
        .map_err(|m| Error::validation("description", m))?;
    Ok(())
}

/// Rule 1 broken: names the open order.
fn already_open(item: &ReleaseItem, open: &OpenOrder) -> Error {
    Error::Conflict(format!(
        "release item {} already has an open work order: #{} \"{}\"; close it or let it finish first",
        item.name, open.id, open.title
    ))
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
        .visible(actor, work_order_views::get(&state.db.pool, id).await)?;
    apply(state, actor, who, id, &command, &StageRecord::default()).await
}

/// `command` through the state machine, by `actor`, with what the flow
/// learnt from the cluster.
async fn apply(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
    command: &Command,
    record: &StageRecord,
) -> Result<WorkOrder> {
    let may_act = |path: &str| state.policy.may(actor, Action::FileWorkOrder, path);
    Ok(work_orders::apply(
        &state.db,
        id,
        command,
        Source::Person {
            account: actor,
            may_act: &may_act,
        },
        record,
        who,
    )
    .await?)
}

/// Starts, rolls back or cancels stage `stage` of order `id` (rules 4 and
/// 6). The state machine is asked first, then the stage's cluster and
/// Deployment are checked (so an unreachable cluster, a missing or paused
/// Deployment, or a rollback the rule refuses is a clear error and changes
/// nothing), then the change and its job are written in one transaction —
/// where the Deployment's rollout lock is taken or given back — and this
/// server's engine is woken.
pub async fn drive_stage(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    id: i64,
    command: Command,
) -> Result<WorkOrder> {
    let stage = match &command {
        Command::Deploy { stage }
        | Command::Rollback { stage, .. }
        | Command::Cancel { stage, .. }
        | Command::ApproveStep { stage, .. }
        | Command::SignOff { stage }
        | Command::GoOn { stage } => *stage,
        _ => return decide_on_work_order(state, actor, who, id, command).await,
    };
    // A write decides on the order as it is now, never on a cached read.
    let d = detail(state, actor, None, id).await?;
    let may_act = state
        .policy
        .may(actor, Action::FileWorkOrder, &d.order.node_path);
    let facts = work_orders::facts_for(&d, actor, may_act);
    let order = d.order;
    decide(order.state, &command, &facts).map_err(|r| refusal(&command, r))?;
    if matches!(command, Command::Deploy { .. }) {
        // A stage held or frozen says so before its cluster is asked
        // anything (the state machine checks again when the deploy is
        // written).
        let mut conn = state
            .db
            .pool
            .acquire()
            .await
            .map_err(crate::db::error::Error::from)?;
        if let Some(why) = work_orders::stopped_stages(&mut conn, &order)
            .await?
            .remove(&stage)
        {
            return Err(Error::LineStopped(why));
        }
        if let Some(why) = work_orders::frozen_stages(&mut conn, &order, crate::db::now_ms())
            .await?
            .remove(&stage)
        {
            return Err(Error::Frozen(why));
        }
    }
    let target = work_orders::stage_target(&state.db.pool, id, i64::from(stage)).await?;
    let (command, record) = match command {
        Command::Deploy { .. } => {
            let record = preflight(state, &target, stage).await?;
            (command, record)
        }
        Command::Rollback { whole_template, .. } => {
            let record = rollback_preflight(state, &target, whole_template).await?;
            (command, record)
        }
        Command::Cancel { stage, reason } => {
            // What the cluster showed, as one line that fits the note.
            let seen: String = last_seen(state, &target)
                .await
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let reason = reason.trim();
            let room = MAX_NOTE_LEN.saturating_sub(reason.chars().count() + 3);
            let reason = format!("{reason} — {}", seen.chars().take(room).collect::<String>());
            (Command::Cancel { stage, reason }, StageRecord::default())
        }
        other => (other, StageRecord::default()),
    };
    let order = apply(state, actor, who, id, &command, &record).await?;
    if matches!(command, Command::Cancel { .. } | Command::Rollback { .. }) {
        // A cancel, or a rollback from a paused canary, ends a running job.
        state.engine.check_leases();
    }
    if let Command::ApproveStep { step, .. } = command {
        approve_in_cluster(state, &target, step).await;
    }
    state.engine.wake();
    Ok(order)
}

/// Lets the canary of `target` go on from `step` in its cluster, now that
/// the approval is recorded: the status patch of `kubectl-kruise rollout
/// approve`, on the Rollout as read, only while it is paused at `step`.
/// Best effort: when the cluster does not answer in time, the stage's job
/// (which follows the Rollout) makes the same patch.
async fn approve_in_cluster(state: &AppState, target: &StageTarget, step: u32) {
    let (namespace, name) = (&target.namespace, &target.deployment);
    let approve = async {
        let client = cluster_client(state, target.cluster_id, &target.cluster).await?;
        match client.rollout(namespace, name).await {
            Ok(Some(view)) if view.paused_at(step) => {
                match client.approve_step(namespace, &view).await {
                    Ok(_) | Err(KubeError::Conflict(_)) => Ok(()),
                    Err(e) => Err(kube_error(&target.cluster, e)),
                }
            }
            Ok(_) => Ok(()),
            Err(e) => Err(kube_error(&target.cluster, e)),
        }
    };
    match tokio::time::timeout(LOOK_DEADLINE, approve).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::info!(error = %e, "approving the canary step is left to its job"),
        Err(_) => tracing::info!("the cluster did not answer in time; the job approves the step"),
    }
}

/// Checks that the canary of stage `stage` has somewhere to route its
/// traffic: the app names a Service and an Ingress when the steps shift
/// traffic, and both exist in the Deployment's namespace.
async fn check_routing(target: &StageTarget, stage: u32, client: &ClusterClient) -> Result<()> {
    let routing =
        canary_routing(target).map_err(|m| Error::Conflict(format!("stage {stage}: {m}")))?;
    let Some(routing) = routing else {
        return Ok(());
    };
    let missing = client
        .missing_routing(&target.namespace, &routing)
        .await
        .map_err(|e| kube_error(&target.cluster, e))?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "stage {stage}: the canary routes traffic through {}, which {} not exist in namespace {} \
         of cluster {}; create {} or fix app {}",
        missing.join(" and "),
        if missing.len() == 1 { "does" } else { "do" },
        target.namespace,
        target.cluster,
        if missing.len() == 1 { "it" } else { "them" },
        target.app
    )))
}

/// Checks that this version can deploy stage `stage`'s strategy, that its
/// cluster answers and its Deployment and container exist, and that the
/// Deployment can roll out (not paused; not scaled to zero when the item
/// refuses that). What the deploy starts with: its overall deadline.
async fn preflight(state: &AppState, target: &StageTarget, stage: u32) -> Result<StageRecord> {
    let strategy: Strategy = target
        .strategy
        .parse()
        .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?;
    let (client, deployment) = stage_deployment(state, target).await?;
    if strategy == Strategy::Canary
        && !client
            .serves_rollouts()
            .await
            .map_err(|e| kube_error(&target.cluster, e))?
    {
        return Err(Error::Conflict(format!(
            "stage {stage}: {}",
            rollouts_not_served(&target.cluster)
        )));
    }
    if strategy == Strategy::Canary {
        check_routing(target, stage, &client).await?;
    }
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
    // A paused Deployment takes the new template but rolls nothing out, and
    // no progress deadline applies to it: the stage would wait forever. A
    // canary stage's strategy owns the pause (OpenKruise pauses it itself).
    let paused = deployment.spec.paused == Some(true);
    if paused && strategy != Strategy::Canary {
        return Err(Error::validation(
            "stage",
            format!(
                "Deployment {}/{} in cluster {} is paused (spec.paused), so a rollout would never \
                 progress; resume it first (kubectl rollout resume deployment/{} -n {})",
                target.namespace,
                target.deployment,
                target.cluster,
                target.deployment,
                target.namespace
            ),
        ));
    }
    // Scaled to zero, a deploy changes the template and runs nothing: the
    // release item may refuse that rather than report it.
    if target.refuse_zero_replicas && deployment::scaled_to_zero(&deployment) {
        return Err(Error::validation(
            "stage",
            format!(
                "Deployment {}/{} in cluster {} is scaled to zero replicas, so nothing would run \
                 the new version, and release item settings refuse such deploys; scale it up first \
                 (kubectl scale deployment/{} -n {} --replicas=N)",
                target.namespace,
                target.deployment,
                target.cluster,
                target.deployment,
                target.namespace
            ),
        ));
    }
    Ok(StageRecord {
        deadline_ms: Some(deployment::overall_deadline_ms(
            &deployment,
            target.deadline_minutes,
        )),
        ..StageRecord::default()
    })
}

/// Checks the rule of rollbacks against the live Deployment before
/// anything is written: it must be the object the stage deployed to, run
/// the image the stage deployed, and (unless an owner restores the whole
/// template) carry no change of someone else's since. A refusal is a 409
/// listing what changed; the stage stays as it was.
async fn rollback_preflight(
    state: &AppState,
    target: &StageTarget,
    whole_template: bool,
) -> Result<StageRecord> {
    let name = format!("{}/{}", target.namespace, target.deployment);
    let (_, live) = stage_deployment(state, target).await?;
    let live = live.ok_or_else(|| {
        Error::Conflict(format!(
            "Deployment {name} does not exist in cluster {} any more; there is nothing to roll back",
            target.cluster
        ))
    })?;
    if let Some(reason) = deployment::replaced(target.deployment_uid.as_deref(), &live) {
        return Err(Error::Conflict(format!(
            "{name} in cluster {}: {reason}; nothing of this stage runs there to roll back",
            target.cluster
        )));
    }
    let replaced = target
        .replaced_template
        .as_deref()
        .and_then(|t| serde_json::from_str::<PodTemplateSpec>(t).ok());
    if let Some(reason) = deployment::rollback_refusal(
        &name,
        replaced.as_ref(),
        &target.container,
        &target.image,
        &live,
        whole_template,
    ) {
        return Err(Error::Conflict(reason));
    }
    Ok(StageRecord {
        deadline_ms: Some(deployment::overall_deadline_ms(
            &live,
            target.deadline_minutes,
        )),
        ..StageRecord::default()
    })
}

/// What the stage's Deployment shows now, for the timeline of a cancel:
/// its progress, or why it could not be read (a cancel never waits long
/// on a cluster that does not answer).
async fn last_seen(state: &AppState, target: &StageTarget) -> String {
    let name = format!("{}/{}", target.namespace, target.deployment);
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stage_deployment(state, target),
    )
    .await;
    let engine = if target.message.is_empty() {
        String::new()
    } else {
        format!("; the engine last reported: {}", target.message)
    };
    match read {
        Ok(Ok((_, Some(d)))) => {
            let progress = match deployment::evaluate(&d) {
                Progress::Waiting(m) | Progress::Verifying(m) | Progress::Failed(m) => m,
                Progress::Complete => "rolled out".to_string(),
            };
            format!(
                "{name} when cancelled: {progress}{}, {}{engine}",
                if d.spec.paused == Some(true) {
                    ", paused"
                } else {
                    ""
                },
                deployment::container_image(&d, &target.container)
                    .map(|i| format!("{} runs {i}", target.container))
                    .unwrap_or_else(|| format!("no container {}", target.container)),
            )
        }
        Ok(Ok((_, None))) => format!("{name} did not exist when cancelled{engine}"),
        Ok(Err(e)) => format!("{name} could not be read when cancelled ({e}){engine}"),
        Err(_) => format!("{name} did not answer within 5 s when cancelled{engine}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::work_order::{Refusal, RefusalKind};

    fn refused(kind: RefusalKind, command: &Command) -> Error {
        refusal(
            command,
            Refusal {
                kind,
                reason: "why".into(),
            },
        )
        .into()
    }

    #[test]
    fn refusals_answer_403_409_or_422_naming_the_input() {
        let approve = Command::Approve {
            comment: String::new(),
        };
        assert!(matches!(
            refused(RefusalKind::NotAllowed, &approve),
            Error::Forbidden(m) if m == "why"
        ));
        assert!(matches!(
            refused(RefusalKind::Conflict, &approve),
            Error::Conflict(m) if m == "why"
        ));
        for (command, input) in [
            (approve, "comment"),
            (
                Command::Close {
                    reason: String::new(),
                },
                "reason",
            ),
            (Command::Deploy { stage: 9 }, "stage"),
        ] {
            let error = refused(RefusalKind::Invalid, &command);
            assert_eq!(error.status_code(), 422);
            assert_eq!(error.body().error.field.as_deref(), Some(input));
        }
    }
}
