//! Work orders: the shell around the state machine in
//! `domain::work_order`. Each change loads the facts, asks [`decide`], and
//! writes the new state, the approval (if any), the timeline event and the
//! audit row in one transaction.

use std::collections::BTreeSet;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::accounts::Account;
use super::audit::{self, AuditActor, Change};
use super::jobs::{self, JobLease, Subject, check_lease};
use super::release_items::{self, ReleaseItem};
use super::tree::Scope;
use super::{Db, Tx, now_ms};
use crate::config::DbKind;
use crate::domain::release_item::{Canary, Strategy};
use crate::domain::text::{check_free_form, check_single_line};
use crate::domain::tree::{self as rules, Membership, Role};
use crate::domain::work_order::{
    Command, Facts, Outcome, Refusal, RefusalKind, StageChange, StageFacts, StageStatus, State,
    decide,
};
use crate::error::{Error, Result, is_unique_violation};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkOrder {
    pub id: i64,
    pub release_item_id: i64,
    /// The release item's name.
    pub release_item: String,
    pub node_id: i64,
    pub node_path: String,
    /// The GitLab tag released.
    pub version: String,
    /// `image_repository:version`.
    pub image: String,
    pub title: String,
    pub description: String,
    /// `pending_approval`, `approved`, `in_progress`, `succeeded`, `failed`, `rejected` or `closed`.
    #[schema(value_type = String)]
    #[serde(serialize_with = "serialize_state")]
    pub state: State,
    pub creator_id: i64,
    pub creator: String,
    pub required_approvals: i64,
    pub approvals: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

fn serialize_state<S: serde::Serializer>(state: &State, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Decision {
    pub account: String,
    /// `approved` or `rejected`.
    pub decision: String,
    pub comment: String,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageRun {
    pub position: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub cluster: String,
    pub strategy: Strategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// `pending`, `deploying`, `verifying`, `paused`, `succeeded`, `failed`, `rolling_back`, `rolled_back`.
    pub status: String,
    pub replaced_image: Option<String>,
    pub replaced_revision: Option<String>,
    pub new_revision: Option<String>,
    /// The revision a rollback brought back.
    pub restored_revision: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEvent {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    /// What happened, e.g. `filed`, `approval_recorded`, `approved`, `rejected`, `closed`.
    pub kind: String,
    pub message: String,
    pub stage_position: Option<i64>,
}

/// A work order with everything that happened to it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkOrderDetail {
    #[serde(flatten)]
    pub order: WorkOrder,
    /// The node whose owners approve, and who they are (creator included).
    pub approvers_node: Option<String>,
    pub approvers: Vec<String>,
    pub decisions: Vec<Decision>,
    pub stage_runs: Vec<StageRun>,
    pub timeline: Vec<TimelineEvent>,
}

const COLUMNS: &str = "w.id, w.release_item_id, r.name AS release_item, w.node_id, n.path AS node_path, w.version, \
    w.image, w.title, w.description, w.state, w.creator_id, a.name AS creator, w.required_approvals, \
    (SELECT COUNT(*) FROM approvals ap WHERE ap.work_order_id = w.id AND ap.decision = 'approved') AS approvals, \
    w.created_at, w.updated_at";
const FROM: &str = "work_orders w JOIN release_items r ON r.id = w.release_item_id \
    JOIN nodes n ON n.id = w.node_id JOIN accounts a ON a.id = w.creator_id";

fn from_row(row: &AnyRow) -> Result<WorkOrder, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(WorkOrder {
        id: row.try_get("id")?,
        release_item_id: row.try_get("release_item_id")?,
        release_item: row.try_get("release_item")?,
        node_id: row.try_get("node_id")?,
        node_path: row.try_get("node_path")?,
        version: row.try_get("version")?,
        image: row.try_get("image")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        state: state
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        creator_id: row.try_get("creator_id")?,
        creator: row.try_get("creator")?,
        required_approvals: row.try_get("required_approvals")?,
        approvals: row.try_get("approvals")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Owners on the chain from the root to `path`, as the tree rules take them.
async fn owners_on_chain(tx: &mut Tx, path: &str) -> Result<Vec<Membership<String>>> {
    let mut out = Vec::new();
    for node_path in rules::ancestor_chain(path) {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT a.name FROM node_members m JOIN nodes n ON n.id = m.node_id JOIN accounts a ON a.id = m.account_id \
             WHERE n.path = $1 AND m.role = 'owner' AND a.disabled_at IS NULL",
        )
        .bind(&node_path)
        .fetch_all(&mut **tx)
        .await?;
        out.extend(names.into_iter().map(|account| Membership {
            account,
            path: node_path.clone(),
            role: Role::Owner,
        }));
    }
    Ok(out)
}

/// The effective approvers at `path` (owners of the nearest node with
/// owners, disabled accounts excluded) and the node they come from.
pub(crate) async fn approvers_of(
    tx: &mut Tx,
    path: &str,
) -> Result<Option<(String, BTreeSet<String>)>> {
    let owners = owners_on_chain(tx, path).await?;
    Ok(rules::effective_approvers(path, &owners))
}

/// What a missing order answers; an order the reader may not see answers
/// the same, so ids cannot be probed.
pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("no work order with id {id}"))
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<WorkOrder> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

async fn open_order_of(
    executor: impl sqlx::Executor<'_, Database = sqlx::Any>,
    item_id: i64,
) -> Result<Option<(i64, String)>> {
    let open: Vec<&str> = State::OPEN.iter().map(|s| s.as_str()).collect();
    let row = sqlx::query(
        "SELECT id, title FROM work_orders WHERE release_item_id = $1 AND state IN ($2, $3, $4, $5)",
    )
    .bind(item_id)
    .bind(open[0])
    .bind(open[1])
    .bind(open[2])
    .bind(open[3])
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|r| (r.get::<i64, _>("id"), r.get::<String, _>("title"))))
}

/// Rule 1 broken: names the open order.
fn already_open(item: &ReleaseItem, open: (i64, String)) -> Error {
    Error::Conflict(format!(
        "release item {} already has an open work order: #{} \"{}\"; close it or let it finish first",
        item.name, open.0, open.1
    ))
}

async fn add_event(
    tx: &mut Tx,
    work_order_id: i64,
    who: &AuditActor,
    kind: &str,
    message: &str,
    stage_position: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO timeline_events (work_order_id, at, actor_id, actor, kind, message, stage_position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(work_order_id)
    .bind(now_ms())
    .bind(who.account_id)
    .bind(&who.name)
    .bind(kind)
    .bind(message)
    .bind(stage_position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What someone asks to file.
pub struct NewWorkOrder<'a> {
    pub item: &'a ReleaseItem,
    pub version: &'a str,
    pub title: &'a str,
    pub description: &'a str,
}

/// Checks what can be checked before asking GitLab: fields, rule 1, and
/// that enough approvers remain once the creator is excluded.
pub async fn check_filing(db: &Db, new: &NewWorkOrder<'_>, creator: &Account) -> Result<()> {
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
    check_single_line("title", title).map_err(|m| Error::validation("title", m))?;
    check_free_form("description", new.description)
        .map_err(|m| Error::validation("description", m))?;
    if let Some(open) = open_order_of(&db.pool, new.item.id).await? {
        return Err(already_open(new.item, open));
    }
    if new.item.stages.is_empty() {
        return Err(Error::Conflict(format!(
            "release item {} has no stages yet",
            new.item.name
        )));
    }
    let mut tx = Tx::begin_read(&db.pool).await?;
    let approvers = approvers_of(&mut tx, &new.item.node_path).await?;
    tx.rollback().await?;
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

/// Files a work order (the version already checked against GitLab): the
/// order, one pending stage run per stage and the first timeline event.
/// The database's partial unique index makes rule 1 hold under races.
pub async fn file(
    db: &Db,
    new: &NewWorkOrder<'_>,
    creator: &Account,
    who: &AuditActor,
) -> Result<WorkOrder> {
    let item = new.item;
    let image = format!("{}:{}", item.image_repository, new.version.trim());
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO work_orders (release_item_id, node_id, version, image, title, description, state, creator_id, \
         required_approvals, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
    )
    .bind(item.id)
    .bind(item.node_id)
    .bind(new.version.trim())
    .bind(&image)
    .bind(new.title.trim())
    .bind(new.description)
    .bind(State::PendingApproval.as_str())
    .bind(creator.id)
    .bind(item.required_approvals)
    .bind(now)
    .fetch_one(&mut *tx)
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(e) if is_unique_violation(&e) => {
            drop(tx);
            let open = open_order_of(&db.pool, item.id)
                .await?
                .unwrap_or((0, "?".into()));
            return Err(already_open(item, open));
        }
        Err(e) => return Err(e.into()),
    };
    for stage in &item.stages {
        sqlx::query(
            "INSERT INTO stage_runs (work_order_id, position, name, app_id, strategy, canary_json, status) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending')",
        )
        .bind(id)
        .bind(stage.position)
        .bind(&stage.name)
        .bind(stage.app_id)
        .bind(stage.strategy.as_str())
        .bind(stage.canary.as_ref().and_then(|c| serde_json::to_string(c).ok()))
        .execute(&mut *tx)
        .await?;
    }
    add_event(
        &mut tx,
        id,
        who,
        "filed",
        &format!("{} {}", item.name, new.version.trim()),
        None,
    )
    .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "work_order.file",
            target_type: "work_order",
            target_id: Some(id),
            summary: format!(
                "filed #{id} {} {} \"{}\"",
                item.name,
                new.version.trim(),
                new.title.trim()
            ),
            before: None,
            after: None,
        },
    )
    .await?;
    let order = get_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// A refusal of the state machine as the error people see.
pub fn refusal(command: &Command, refusal: Refusal) -> Error {
    match refusal.kind {
        RefusalKind::NotAllowed => Error::Forbidden(refusal.reason),
        RefusalKind::Conflict => Error::Conflict(refusal.reason),
        RefusalKind::Invalid => Error::validation(
            match command {
                Command::Approve { .. } | Command::Reject { .. } => "comment",
                Command::Close { .. } => "reason",
                _ => "stage",
            },
            refusal.reason,
        ),
    }
}

/// Where a stage run deploys to, and where it stands: what the deploy
/// preflight, the pod pages and the engine's stage jobs read.
#[derive(Debug, Clone)]
pub struct StageTarget {
    /// `rolling` or `canary`.
    pub strategy: String,
    pub app: String,
    pub cluster_id: i64,
    pub cluster: String,
    pub namespace: String,
    pub deployment: String,
    pub container: String,
    /// The image the order releases (`image_repository:version`).
    pub image: String,
    pub status: StageStatus,
    /// What the stage's deploy replaced (recorded before its first write).
    pub replaced_image: Option<String>,
    pub replaced_revision: Option<String>,
    /// The replaced pod template, as JSON.
    pub replaced_template: Option<String>,
}

/// The app, cluster and Deployment of stage `position` of order `id`.
pub async fn stage_target(pool: &AnyPool, id: i64, position: i64) -> Result<StageTarget> {
    let row = sqlx::query(
        "SELECT s.strategy, p.name AS app, p.cluster_id, c.name AS cluster, p.namespace, p.deployment, p.container, \
         w.image, s.status, s.replaced_image, s.replaced_revision, s.replaced_template \
         FROM stage_runs s JOIN work_orders w ON w.id = s.work_order_id \
         JOIN apps p ON p.id = s.app_id JOIN clusters c ON c.id = p.cluster_id \
         WHERE s.work_order_id = $1 AND s.position = $2",
    )
    .bind(id)
    .bind(position)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::NotFound(format!("work order {id} has no stage {position}")))?;
    let status: String = row.try_get("status")?;
    Ok(StageTarget {
        strategy: row.try_get("strategy")?,
        app: row.try_get("app")?,
        cluster_id: row.try_get("cluster_id")?,
        cluster: row.try_get("cluster")?,
        namespace: row.try_get("namespace")?,
        deployment: row.try_get("deployment")?,
        container: row.try_get("container")?,
        image: row.try_get("image")?,
        status: status
            .parse()
            .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?,
        replaced_image: row.try_get("replaced_image")?,
        replaced_revision: row.try_get("replaced_revision")?,
        replaced_template: row.try_get("replaced_template")?,
    })
}

/// The stage runs of order `id` as the state machine sees them.
async fn stage_facts(tx: &mut Tx, id: i64) -> Result<Vec<StageFacts>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, CAST(CASE WHEN replaced_image IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM stage_runs \
         WHERE work_order_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(status, deployed)| {
            let status: StageStatus = status
                .parse()
                .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?;
            Ok(StageFacts::new(status, deployed != 0))
        })
        .collect()
}

/// The facts the state machine needs about `actor` (none for the engine)
/// and `order`, read inside `tx` after the order's row is locked.
/// `may_act` says whether the policy lets the actor close, deploy and roll
/// back orders on the order's node.
async fn facts(
    tx: &mut Tx,
    order: &WorkOrder,
    actor: Option<&Account>,
    may_act: bool,
) -> Result<Facts> {
    let mut facts = Facts {
        approvals: order.approvals as u32,
        required_approvals: order.required_approvals as u32,
        actor_may_close: may_act,
        actor_may_deploy: may_act,
        stages: stage_facts(tx, order.id).await?,
        auto_rollback: sqlx::query_scalar::<_, i64>(
            "SELECT auto_rollback FROM release_items WHERE id = $1",
        )
        .bind(order.release_item_id)
        .fetch_one(&mut **tx)
        .await?
            != 0,
        ..Facts::default()
    };
    if let Some(actor) = actor {
        let approvers = approvers_of(tx, &order.node_path).await?;
        let approved_by_actor: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM approvals WHERE work_order_id = $1 AND account_id = $2 AND decision = 'approved'",
        )
        .bind(order.id)
        .bind(actor.id)
        .fetch_optional(&mut **tx)
        .await?;
        facts.actor_is_creator = order.creator_id == actor.id;
        facts.actor_is_approver = approvers.is_some_and(|(_, set)| set.contains(&actor.name));
        facts.actor_already_approved = approved_by_actor.is_some();
    }
    Ok(facts)
}

/// The facts for showing buttons (no lock; the POST decides again).
pub async fn facts_for(
    db: &Db,
    order: &WorkOrder,
    actor: &Account,
    may_act: bool,
) -> Result<Facts> {
    let mut tx = Tx::begin_read(&db.pool).await?;
    let f = facts(&mut tx, order, Some(actor), may_act).await?;
    tx.rollback().await?;
    Ok(f)
}

/// Takes order `id`'s row lock inside `tx` (an UPDATE is portable where
/// FOR UPDATE is not), so concurrent changes of one order queue up.
async fn lock(tx: &mut Tx, id: i64) -> Result<()> {
    let locked = sqlx::query("UPDATE work_orders SET updated_at = updated_at WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if locked == 0 {
        return Err(Error::NotFound(format!("no work order with id {id}")));
    }
    Ok(())
}

/// Who sends a command: a person (with what the policy lets them do on
/// the order's node), or the engine holding the lease of a job.
pub enum Source<'a> {
    Person {
        account: &'a Account,
        may_act: &'a (dyn Fn(&str) -> bool + Send + Sync),
    },
    Engine {
        job: &'a JobLease,
    },
}

/// What the engine learnt from Kubernetes along with a report.
#[derive(Debug, Clone, Default)]
pub struct StageRecord {
    pub new_revision: Option<String>,
    pub restored_revision: Option<String>,
}

/// Applies `command` to order `id` through the state machine and writes
/// the new state, the stage run, the approval, the queued job, the
/// timeline events and (for people) the audit row in one transaction.
pub async fn apply(
    db: &Db,
    id: i64,
    command: &Command,
    source: Source<'_>,
    record: &StageRecord,
    who: &AuditActor,
) -> Result<WorkOrder> {
    let mut tx = db.begin_write().await?;
    lock(&mut tx, id).await?;
    let order = get_in(&mut tx, id).await?;
    let (actor, may_act) = match &source {
        Source::Person { account, may_act } => (Some(*account), may_act(&order.node_path)),
        Source::Engine { job } => {
            check_lease(&mut tx, job).await?;
            (None, false)
        }
    };
    let facts = facts(&mut tx, &order, actor, may_act).await?;
    let transition = decide(order.state, command, &facts).map_err(|r| refusal(command, r))?;
    let now = now_ms();
    if transition.to != transition.from {
        sqlx::query(
            "UPDATE work_orders SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
        )
        .bind(transition.to.as_str())
        .bind(now)
        .bind(id)
        .bind(transition.from.as_str())
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query("UPDATE work_orders SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let decision = match command {
        Command::Approve { .. } => Some("approved"),
        Command::Reject { .. } => Some("rejected"),
        _ => None,
    };
    if let (Some(decision), Some(actor)) = (decision, actor) {
        sqlx::query(
            "INSERT INTO approvals (work_order_id, account_id, decision, comment, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(actor.id)
        .bind(decision)
        .bind(&transition.note)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict("you have already decided on this work order".into())
            } else {
                e.into()
            }
        })?;
    }
    let stage_position = transition.stage.map(|c| i64::from(c.position));
    if let Some(change) = transition.stage {
        write_stage(&mut tx, id, change, &transition.note, record, now).await?;
    }
    if let Source::Engine { job } = &source
        && !matches!(
            command,
            Command::Report {
                outcome: Outcome::Verifying,
                ..
            }
        )
    {
        // The job's work is over with this report.
        jobs::close(&mut tx, job, now).await?;
    }
    if let (Some(kind), Some(position)) = (transition.job, stage_position) {
        let subject = Subject::StageRun {
            work_order_id: id,
            position,
        };
        jobs::enqueue(&mut tx, kind.as_str(), subject, now).await?;
    }
    add_event(
        &mut tx,
        id,
        who,
        transition.event,
        &transition.note,
        stage_position,
    )
    .await?;
    if let Some((event, message)) = &transition.then {
        let position = if *event == "succeeded" {
            None
        } else {
            stage_position
        };
        add_event(&mut tx, id, who, event, message, position).await?;
    }
    if actor.is_some() {
        audit::record(
            &mut tx,
            who,
            Change {
                action: match command {
                    Command::Approve { .. } => "work_order.approve",
                    Command::Reject { .. } => "work_order.reject",
                    Command::Close { .. } => "work_order.close",
                    Command::Deploy { .. } => "work_order.deploy",
                    Command::Rollback { .. } => "work_order.rollback",
                    Command::Report { .. } => "work_order.report",
                },
                target_type: "work_order",
                target_id: Some(id),
                summary: match transition.stage {
                    Some(c) => format!("#{id} stage {}: {} → {}", c.position, c.from, c.to),
                    None => format!("#{id}: {} → {}", transition.from, transition.to),
                },
                before: None,
                after: None,
            },
        )
        .await?;
    }
    let order = get_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Records what a deploy is about to replace (before the engine writes to
/// Kubernetes), with a timeline entry, fenced on the job's lease.
#[allow(clippy::too_many_arguments)]
pub async fn record_replaced(
    db: &Db,
    lease: &JobLease,
    id: i64,
    position: i64,
    image: &str,
    revision: Option<&str>,
    template: &str,
    message: &str,
) -> Result<()> {
    let mut tx = db.begin_write().await?;
    check_lease(&mut tx, lease).await?;
    let updated = sqlx::query(
        "UPDATE stage_runs SET replaced_image = $1, replaced_revision = $2, replaced_template = $3 \
         WHERE work_order_id = $4 AND position = $5 AND replaced_image IS NULL",
    )
    .bind(image)
    .bind(revision)
    .bind(template)
    .bind(id)
    .bind(position)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        add_event(
            &mut tx,
            id,
            &AuditActor::engine(),
            "deploying",
            message,
            Some(position),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Writes a stage run's new status with the times and what the engine
/// learnt.
async fn write_stage(
    tx: &mut Tx,
    id: i64,
    change: StageChange,
    note: &str,
    record: &StageRecord,
    now: i64,
) -> Result<()> {
    let finished = matches!(
        change.to,
        StageStatus::Succeeded | StageStatus::Failed | StageStatus::RolledBack
    );
    let updated = sqlx::query(
        "UPDATE stage_runs SET status = $1, message = $2, \
         started_at = CASE WHEN $3 = 1 THEN $4 ELSE started_at END, \
         finished_at = CASE WHEN $5 = 1 THEN $4 ELSE NULL END, \
         new_revision = COALESCE($6, new_revision), restored_revision = COALESCE($7, restored_revision) \
         WHERE work_order_id = $8 AND position = $9 AND status = $10",
    )
    .bind(change.to.as_str())
    .bind(note)
    .bind(i64::from(change.to == StageStatus::Deploying))
    .bind(now)
    .bind(i64::from(finished))
    .bind(record.new_revision.as_deref())
    .bind(record.restored_revision.as_deref())
    .bind(id)
    .bind(i64::from(change.position))
    .bind(change.from.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(Error::Conflict(format!(
            "stage {} changed meanwhile; reload and try again",
            change.position
        )));
    }
    Ok(())
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<WorkOrder> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

/// An order with its approvers, decisions, stage runs and timeline.
pub async fn detail(pool: &AnyPool, id: i64) -> Result<WorkOrderDetail> {
    let order = get(pool, id).await?;
    let mut tx = Tx::begin_read(pool).await?;
    let approvers = approvers_of(&mut tx, &order.node_path).await?;
    tx.rollback().await?;
    let decisions = sqlx::query(
        "SELECT a.name, ap.decision, ap.comment, ap.at FROM approvals ap JOIN accounts a ON a.id = ap.account_id \
         WHERE ap.work_order_id = $1 ORDER BY ap.at",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(Decision {
            account: r.try_get("name")?,
            decision: r.try_get("decision")?,
            comment: r.try_get("comment")?,
            at: r.try_get("at")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let stage_runs = sqlx::query(
        "SELECT s.position, s.name, s.app_id, p.name AS app, c.name AS cluster, s.strategy, s.canary_json, s.status, \
         s.replaced_image, s.replaced_revision, s.new_revision, s.restored_revision, s.started_at, s.finished_at, s.message \
         FROM stage_runs s JOIN apps p ON p.id = s.app_id JOIN clusters c ON c.id = p.cluster_id \
         WHERE s.work_order_id = $1 ORDER BY s.position",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let strategy: String = r.try_get("strategy")?;
        let canary: Option<String> = r.try_get("canary_json")?;
        Ok(StageRun {
            position: r.try_get("position")?,
            name: r.try_get("name")?,
            app_id: r.try_get("app_id")?,
            app: r.try_get("app")?,
            cluster: r.try_get("cluster")?,
            strategy: if strategy == "canary" { Strategy::Canary } else { Strategy::Rolling },
            canary: canary.and_then(|c| serde_json::from_str(&c).ok()),
            status: r.try_get("status")?,
            replaced_image: r.try_get("replaced_image")?,
            replaced_revision: r.try_get("replaced_revision")?,
            new_revision: r.try_get("new_revision")?,
            restored_revision: r.try_get("restored_revision")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            message: r.try_get("message")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let timeline = sqlx::query(
        "SELECT id, at, actor, kind, message, stage_position FROM timeline_events WHERE work_order_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(TimelineEvent {
            id: r.try_get("id")?,
            at: r.try_get("at")?,
            actor: r.try_get("actor")?,
            kind: r.try_get("kind")?,
            message: r.try_get("message")?,
            stage_position: r.try_get("stage_position")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let (approvers_node, approvers) = match approvers {
        Some((node, set)) => (Some(node), set.into_iter().collect()),
        None => (None, Vec::new()),
    };
    Ok(WorkOrderDetail {
        order,
        approvers_node,
        approvers,
        decisions,
        stage_runs,
        timeline,
    })
}

/// List filters; all optional.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub state: Option<State>,
    /// Orders of these release items (any, when empty).
    pub items: Vec<i64>,
    /// A node path: orders of items at or below it.
    pub node: Option<String>,
    pub creator: Option<i64>,
    /// Only orders waiting for this account's approval: the account and
    /// the nodes where it approves (`Policy::approver_nodes`).
    pub awaiting: Option<(i64, std::sync::Arc<Vec<i64>>)>,
    /// Only orders with an id below this (keyset pages, newest first).
    pub before_id: Option<i64>,
}

/// The ids of the nodes where `account_id` is an effective approver.
/// Callers use the cached `Policy::approver_nodes`.
pub async fn approver_nodes(pool: &AnyPool, account_id: i64) -> Result<Vec<i64>> {
    let nodes: Vec<(i64, String)> = sqlx::query_as("SELECT id, path FROM nodes")
        .fetch_all(pool)
        .await?;
    let owners: Vec<(String, i64)> = sqlx::query_as(
        "SELECT n.path, m.account_id FROM node_members m JOIN nodes n ON n.id = m.node_id \
         JOIN accounts a ON a.id = m.account_id WHERE m.role = 'owner' AND a.disabled_at IS NULL",
    )
    .fetch_all(pool)
    .await?;
    if !owners.iter().any(|(_, a)| *a == account_id) {
        return Ok(Vec::new());
    }
    let memberships: Vec<Membership<i64>> = owners
        .into_iter()
        .map(|(path, account)| Membership {
            account,
            path,
            role: Role::Owner,
        })
        .collect();
    Ok(nodes
        .into_iter()
        .filter(|(_, path)| {
            rules::effective_approvers(path, &memberships)
                .is_some_and(|(_, set)| set.contains(&account_id))
        })
        .map(|(id, _)| id)
        .collect())
}

/// How a list applies a reader's scope.
enum ScopePlan {
    Everything,
    Nothing,
    /// Few visible orders: `node_id IN (…)` drives the node index, then at
    /// most [`SPARSE_ORDERS`] rows are sorted.
    FewOrders(Vec<i64>),
    /// Many visible orders: the newest-first scan keeps the rows of these
    /// nodes (`+node_id IN (…)`: the unary plus keeps SQLite from driving
    /// the node index and sorting them all) and stops at the page's end.
    ManyOrders(Vec<i64>),
    /// More nodes than a statement should list: the newest-first scan
    /// keeps the rows whose node path lies in the scope.
    ManyNodes,
}

/// Below this many orders in the reader's nodes, their list is read
/// through the node index and sorted; from it on, by the newest-first scan.
const SPARSE_ORDERS: i64 = 2000;

/// Most visible nodes listed in a statement (bind limits, statement size).
const MAX_LISTED_NODES: usize = 500;

/// Picks the way to apply `scope`. On SQLite neither way is good for
/// every reader (measured at 100k orders, docs/benchmarks.md): the
/// newest-first scan reads every order when the reader's nodes hold none,
/// and the node index sorts every visible order when they hold many. A
/// count bounded by [`SPARSE_ORDERS`] tells them apart for well under a
/// millisecond.
async fn scope_plan(db: &Db, scope: &Scope) -> Result<ScopePlan> {
    let Scope::Under(subtrees) = scope else {
        return Ok(ScopePlan::Everything);
    };
    let ids = &subtrees.nodes;
    if ids.is_empty() {
        return Ok(ScopePlan::Nothing);
    }
    if ids.len() > MAX_LISTED_NODES {
        return Ok(ScopePlan::ManyNodes);
    }
    // PostgreSQL plans an id list from its statistics of `node_id` and
    // picks the right way by itself; SQLite needs to be told.
    if db.kind == DbKind::Postgres {
        return Ok(ScopePlan::FewOrders(ids.clone()));
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM work_orders WHERE node_id IN ({}) LIMIT {SPARSE_ORDERS}) t",
        placeholders.join(", ")
    );
    let mut count = sqlx::query_scalar::<_, i64>(&sql);
    for id in ids {
        count = count.bind(*id);
    }
    if count.fetch_one(&db.pool).await? < SPARSE_ORDERS {
        Ok(ScopePlan::FewOrders(ids.clone()))
    } else {
        Ok(ScopePlan::ManyOrders(ids.clone()))
    }
}

/// A page of the orders in `scope`, newest first, and whether more follow.
/// Only the filters given become predicates, so each can use its index;
/// the scope is applied in the query (see [`scope_plan`]), so a page holds
/// `limit` rows the reader may see whenever that many exist.
pub async fn list(
    db: &Db,
    filter: &Filter,
    scope: &Scope,
    limit: i64,
) -> Result<(Vec<WorkOrder>, bool)> {
    let pool = &db.pool;
    enum Arg {
        Int(i64),
        Text(String),
    }
    let mut predicates: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let next = |args: &mut Vec<Arg>, arg: Arg| {
        args.push(arg);
        format!("${}", args.len())
    };
    if let Some(state) = filter.state {
        let p = next(&mut args, Arg::Text(state.as_str().into()));
        predicates.push(format!("w.state = {p}"));
    }
    if !filter.items.is_empty() {
        let ps: Vec<String> = filter
            .items
            .iter()
            .map(|i| next(&mut args, Arg::Int(*i)))
            .collect();
        predicates.push(format!("w.release_item_id IN ({})", ps.join(", ")));
    }
    if let Some(node) = &filter.node {
        // A leaf node is a plain equality on (node_id, id); a subtree is an
        // IN list of the nodes below.
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM nodes WHERE path = $1 OR path LIKE $2")
                .bind(node)
                .bind(format!("{node}/%"))
                .fetch_all(pool)
                .await?;
        match ids.as_slice() {
            [] => return Ok((Vec::new(), false)),
            [one] => {
                let p = next(&mut args, Arg::Int(*one));
                predicates.push(format!("w.node_id = {p}"));
            }
            many => {
                let ps: Vec<String> = many
                    .iter()
                    .map(|id| next(&mut args, Arg::Int(*id)))
                    .collect();
                predicates.push(format!("w.node_id IN ({})", ps.join(", ")));
            }
        }
    }
    if let Some(creator) = filter.creator {
        let p = next(&mut args, Arg::Int(creator));
        predicates.push(format!("w.creator_id = {p}"));
    }
    if let Some((me, nodes)) = &filter.awaiting {
        let me = *me;
        if nodes.is_empty() {
            return Ok((Vec::new(), false));
        }
        let me_p = next(&mut args, Arg::Int(me));
        let node_ps: Vec<String> = nodes
            .iter()
            .map(|n| next(&mut args, Arg::Int(*n)))
            .collect();
        predicates.push(format!(
            "w.state = 'pending_approval' AND w.creator_id <> {me_p} AND w.node_id IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM approvals ap WHERE ap.work_order_id = w.id AND ap.account_id = {me_p})",
            node_ps.join(", ")
        ));
    }
    if let Some(before) = filter.before_id {
        let p = next(&mut args, Arg::Int(before));
        predicates.push(format!("w.id < {p}"));
    }
    match scope_plan(db, scope).await? {
        ScopePlan::Everything => {}
        ScopePlan::Nothing => return Ok((Vec::new(), false)),
        ScopePlan::FewOrders(ids) => {
            let ps: Vec<String> = ids
                .iter()
                .map(|id| next(&mut args, Arg::Int(*id)))
                .collect();
            predicates.push(format!("w.node_id IN ({})", ps.join(", ")));
        }
        ScopePlan::ManyOrders(ids) => {
            let ps: Vec<String> = ids
                .iter()
                .map(|id| next(&mut args, Arg::Int(*id)))
                .collect();
            predicates.push(format!("+w.node_id IN ({})", ps.join(", ")));
        }
        ScopePlan::ManyNodes => {
            if let Some((p, roots)) = scope.predicate("n.path", args.len() + 1) {
                predicates.push(p);
                args.extend(roots.into_iter().map(Arg::Text));
            }
        }
    }
    let limit_p = next(&mut args, Arg::Int(limit + 1));
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} {} ORDER BY w.id DESC LIMIT {limit_p}",
        if predicates.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", predicates.join(" AND "))
        }
    );
    let mut query = sqlx::query(&sql);
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
        };
    }
    let rows = query.fetch_all(pool).await?;
    let mut orders: Vec<WorkOrder> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    let more = orders.len() as i64 > limit;
    orders.truncate(limit as usize);
    Ok((orders, more))
}

/// How many orders wait for this account's approval (the header badge).
pub async fn awaiting_count(pool: &AnyPool, account_id: i64, nodes: &[i64]) -> Result<i64> {
    if nodes.is_empty() {
        return Ok(0);
    }
    let placeholders: Vec<String> = (0..nodes.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT COUNT(*) FROM work_orders w WHERE w.state = 'pending_approval' AND w.creator_id <> $1 \
         AND w.node_id IN ({}) AND NOT EXISTS (SELECT 1 FROM approvals ap WHERE ap.work_order_id = w.id AND ap.account_id = $1)",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(account_id);
    for node in nodes {
        query = query.bind(*node);
    }
    Ok(query.fetch_one(pool).await?)
}

/// The release item of an order, for handlers that need its stages.
pub async fn item_of(pool: &AnyPool, order: &WorkOrder) -> Result<ReleaseItem> {
    release_items::get(pool, order.release_item_id).await
}
