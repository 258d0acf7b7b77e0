//! Fast-path deployments and lanes. A deployment is written with its
//! first event, the Deployment's rollout lock and its job in one
//! transaction; each later change of its status is written with its event,
//! fenced on the job's lease, and the one that ends it gives the lock back
//! and closes the job. A lane is upserted by each deploy to it (and its
//! removal job queued once, to run when the lane would have been idle for
//! the TTL); removing it marks it first, so no deploy goes to a lane on its
//! way out.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::audit::{self, AuditActor, Change, snapshot};
use super::error::{Error, Result};
use super::jobs::{self, JobLease, Subject};
use super::rollout_locks::{self, Key};
use super::{Db, DbKind, Tx, now_ms};
use crate::domain::fast_path::DeploymentStatus;
use crate::domain::verify::VerifyPlan;

/// The job kind that deploys a fast-path deployment.
pub const DEPLOY_JOB: &str = "fast_deploy";
/// The job kind that removes a lane.
pub const LANE_JOB: &str = "remove_lane";

/// A fast-path deployment as the API and pages show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FastDeployment {
    pub id: i64,
    pub app_id: i64,
    /// The app's name.
    pub app: String,
    pub cluster: String,
    /// The cluster's environment class (`dev` or `test`).
    pub environment: String,
    pub namespace: String,
    /// The lane deployed to; absent: the app's own Deployment.
    pub lane: Option<String>,
    /// The Deployment written: the app's, or the lane's copy of it.
    pub deployment: String,
    pub image: String,
    pub status: DeploymentStatus,
    /// Where the rollout is, or why it failed.
    pub message: String,
    /// The image the deploy replaced, once it is known.
    pub replaced_image: Option<String>,
    /// What verifies it once its rollout is available: the verification
    /// plans of the release stages on the app, as one (every gate and
    /// smoke check, the longest soak; no sign-off), taken when it was
    /// asked for. Absent: nothing to check. A gate that fails or cannot be
    /// judged past its limit fails the deployment.
    pub verify: Option<VerifyPlan>,
    /// When its verification started; absent before.
    pub verify_started_at: Option<i64>,
    /// Who asked for it.
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// The tree path of the app's node.
    pub node_path: String,
}

/// One change of a deployment's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeploymentEvent {
    pub at: i64,
    pub status: DeploymentStatus,
    pub message: String,
}

/// A lane: a branch's copy of an app's Deployment (and Service).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lane {
    pub id: i64,
    pub app_id: i64,
    /// The lane's slug (its `rollway.io/lane` label).
    pub lane: String,
    /// The copy's Deployment.
    pub deployment: String,
    /// The copy's Service; absent: the app has none to copy.
    pub service: Option<String>,
    /// The image the last deploy to the lane asked for.
    pub image: String,
    /// `active`, or `removing` once its removal is asked for.
    pub state: String,
    pub created_at: i64,
    /// The last deploy to the lane; idle since.
    pub deployed_at: i64,
}

/// What the engine's deploy job needs: the deployment and its app.
#[derive(Debug, Clone)]
pub struct DeployTarget {
    pub id: i64,
    pub cluster_id: i64,
    pub cluster: String,
    pub namespace: String,
    /// The app's own Deployment, container and Service.
    pub base: String,
    pub container: String,
    pub base_service: Option<String>,
    pub lane: Option<String>,
    pub lane_id: Option<i64>,
    /// The Deployment written.
    pub deployment: String,
    pub image: String,
    pub status: DeploymentStatus,
    pub message: String,
    pub deployment_uid: Option<String>,
    pub replaced_image: Option<String>,
    pub replaced_revision: Option<String>,
    /// The app's node: a line stop there or above holds the deploy.
    pub app_path: String,
    pub deadline_at: Option<i64>,
    pub verify: Option<VerifyPlan>,
    pub verify_started_at: Option<i64>,
    /// The line stop that paused its Deployment mid-rollout.
    pub paused_by_stop: Option<i64>,
}

/// What is asked: `image` on `app` (its lane `lane`, whose Deployment is
/// `deployment`).
pub struct NewDeployment<'a> {
    pub app: &'a super::apps::App,
    pub image: &'a str,
    pub lane: Option<&'a str>,
    /// The Deployment written: the app's, or the lane's copy.
    pub deployment: &'a str,
    /// When the lane's removal job first runs (now + the lane TTL).
    pub lane_expires_at: i64,
}

const COLUMNS: &str = "d.id, d.app_id, a.name AS app, c.name AS cluster, c.environment, a.namespace, \
    d.lane, d.target, d.image, d.status, d.message, d.replaced_image, d.verify_json, d.verify_started_at, \
    d.created_by, d.created_at, d.updated_at, d.finished_at, n.path AS node_path";
const FROM: &str = "deployments d JOIN apps a ON a.id = d.app_id JOIN clusters c ON c.id = a.cluster_id \
    JOIN nodes n ON n.id = a.node_id";

fn status_of(row: &AnyRow, column: &str) -> Result<DeploymentStatus, sqlx::Error> {
    row.try_get::<String, _>(column)?
        .parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))
}

fn from_row(row: &AnyRow) -> Result<FastDeployment, sqlx::Error> {
    Ok(FastDeployment {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        app: row.try_get("app")?,
        cluster: row.try_get("cluster")?,
        environment: row.try_get("environment")?,
        namespace: row.try_get("namespace")?,
        lane: row.try_get("lane")?,
        deployment: row.try_get("target")?,
        image: row.try_get("image")?,
        status: status_of(row, "status")?,
        message: row.try_get("message")?,
        replaced_image: row.try_get("replaced_image")?,
        verify: super::release_items::verify_plan(row.try_get("verify_json")?)?,
        verify_started_at: row.try_get("verify_started_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        node_path: row.try_get("node_path")?,
    })
}

const LANE_COLUMNS: &str = "l.id, l.app_id, l.slug, l.deployment, l.service, l.image, l.state, l.created_at, l.deployed_at";

fn lane_from_row(row: &AnyRow) -> Result<Lane, sqlx::Error> {
    Ok(Lane {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        lane: row.try_get("slug")?,
        deployment: row.try_get("deployment")?,
        service: row.try_get("service")?,
        image: row.try_get("image")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
        deployed_at: row.try_get("deployed_at")?,
    })
}

pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("deployment {id} does not exist"))
}

/// Records `new` as asked by `who`: the lane upserted (refused while it is
/// being removed), the deployment and its first event, the Deployment's
/// rollout lock (a conflict naming the holder when something else rolls it
/// out), the deploy job, and the audit row, in one transaction.
pub async fn create(db: &Db, new: &NewDeployment<'_>, who: &AuditActor) -> Result<FastDeployment> {
    let now = now_ms();
    let app = new.app;
    let mut tx = db.begin_write().await?;
    if let Some(lane) = new.lane {
        let removing: Option<String> = sqlx::query_scalar(&format!(
            "SELECT state FROM lanes WHERE app_id = $1 AND slug = $2{}",
            locking(db)
        ))
        .bind(app.id)
        .bind(lane)
        .fetch_optional(&mut *tx)
        .await?;
        if removing.as_deref() == Some("removing") {
            return Err(Error::Conflict(format!(
                "lane {lane} of app {} is being removed; deploy to it again once it is gone",
                app.name
            )));
        }
        let lane_id: i64 = sqlx::query_scalar(
            "INSERT INTO lanes (app_id, slug, deployment, image, state, created_at, deployed_at) \
             VALUES ($1, $2, $3, $4, 'active', $5, $5) \
             ON CONFLICT (app_id, slug) DO UPDATE SET image = excluded.image, deployed_at = excluded.deployed_at \
             RETURNING id",
        )
        .bind(app.id)
        .bind(lane)
        .bind(new.deployment)
        .bind(new.image)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        jobs::enqueue_once(
            &mut tx,
            LANE_JOB,
            Subject::Lane { id: lane_id },
            new.lane_expires_at,
        )
        .await?;
    }
    let plans: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT verify_json FROM release_stages WHERE app_id = $1 AND verify_json IS NOT NULL \
         ORDER BY release_item_id, position",
    )
    .bind(app.id)
    .fetch_all(&mut *tx)
    .await?;
    let plans = plans
        .into_iter()
        .map(super::release_items::verify_plan)
        .collect::<Result<Vec<_>, _>>()?;
    let verify = VerifyPlan::for_fast_path(plans.iter().flatten());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO deployments (app_id, lane, target, image, status, message, created_by_id, created_by, \
         created_at, updated_at, verify_json) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $8, $9) RETURNING id",
    )
    .bind(app.id)
    .bind(new.lane)
    .bind(new.deployment)
    .bind(new.image)
    .bind("waiting for the engine")
    .bind(who.account_id)
    .bind(&who.name)
    .bind(now)
    .bind(super::release_items::verify_json(verify.as_ref()))
    .fetch_one(&mut *tx)
    .await?;
    event(
        &mut tx,
        id,
        DeploymentStatus::Pending,
        format!("asked by {}", who.name),
        now,
    )
    .await?;
    let key = Key {
        cluster_id: app.cluster_id,
        cluster: app.cluster.clone(),
        namespace: app.namespace.clone(),
        deployment: new.deployment.to_string(),
    };
    rollout_locks::take_for_deployment(&mut tx, id, &key, now).await?;
    jobs::enqueue(&mut tx, DEPLOY_JOB, Subject::Deployment { id }, now).await?;
    let created = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "deployment.create",
            target_type: "deployment",
            target_id: Some(id),
            summary: format!(
                "fast-path deploy of {} to {}/{} in {}{}",
                new.image,
                app.namespace,
                new.deployment,
                app.cluster,
                new.lane
                    .map(|l| format!(" (lane {l} of app {})", app.name))
                    .unwrap_or_else(|| format!(" (app {})", app.name)),
            ),
            before: None,
            after: snapshot(&created),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(created)
}

async fn event(
    tx: &mut Tx,
    id: i64,
    status: DeploymentStatus,
    message: String,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO deployment_events (deployment_id, at, status, message) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(now)
    .bind(status.as_str())
    .bind(message)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<FastDeployment> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE d.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(from_row(&row)?)
}

/// Deployment `id`.
pub async fn get(pool: &AnyPool, id: i64) -> Result<FastDeployment> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE d.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(from_row(&row)?)
}

/// Deployment `id`'s events, oldest first.
pub async fn events(pool: &AnyPool, id: i64) -> Result<Vec<DeploymentEvent>> {
    let rows = sqlx::query(
        "SELECT at, status, message FROM deployment_events WHERE deployment_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeploymentEvent {
                at: r.try_get("at")?,
                status: status_of(r, "status")?,
                message: r.try_get("message")?,
            })
        })
        .collect()
}

/// App `app_id`'s deployments, newest first, at most `limit`.
pub async fn list_for_app(pool: &AnyPool, app_id: i64, limit: i64) -> Result<Vec<FastDeployment>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE d.app_id = $1 ORDER BY d.id DESC LIMIT $2"
    ))
    .bind(app_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// What deployment `id`'s job works with.
pub async fn target(pool: &AnyPool, id: i64) -> Result<DeployTarget> {
    let row = sqlx::query(
        "SELECT d.id, a.cluster_id, c.name AS cluster, a.namespace, a.deployment AS base, a.container, \
         a.service AS base_service, d.lane, l.id AS lane_id, d.target, d.image, d.status, d.message, \
         d.deployment_uid, d.replaced_image, d.replaced_revision, d.deadline_at, d.verify_json, \
         d.verify_started_at, d.paused_by_stop, n.path AS app_path \
         FROM deployments d JOIN apps a ON a.id = d.app_id JOIN clusters c ON c.id = a.cluster_id \
         JOIN nodes n ON n.id = a.node_id \
         LEFT JOIN lanes l ON l.app_id = d.app_id AND l.slug = d.lane WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(DeployTarget {
        id,
        cluster_id: row.try_get("cluster_id")?,
        cluster: row.try_get("cluster")?,
        namespace: row.try_get("namespace")?,
        base: row.try_get("base")?,
        container: row.try_get("container")?,
        base_service: row.try_get("base_service")?,
        lane: row.try_get("lane")?,
        lane_id: row.try_get("lane_id")?,
        deployment: row.try_get("target")?,
        image: row.try_get("image")?,
        status: status_of(&row, "status")?,
        message: row.try_get("message")?,
        deployment_uid: row.try_get("deployment_uid")?,
        replaced_image: row.try_get("replaced_image")?,
        replaced_revision: row.try_get("replaced_revision")?,
        app_path: row.try_get("app_path")?,
        deadline_at: row.try_get("deadline_at")?,
        verify: super::release_items::verify_plan(row.try_get("verify_json")?)?,
        verify_started_at: row.try_get("verify_started_at")?,
        paused_by_stop: row.try_get("paused_by_stop")?,
    })
}

/// What a deploy learnt before its first write: the image and revision it
/// replaces, the Deployment's uid, its overall deadline.
pub struct Started<'a> {
    pub replaced_image: &'a str,
    pub replaced_revision: Option<&'a str>,
    pub uid: Option<&'a str>,
    pub deadline_at: i64,
    pub message: String,
}

/// Marks deployment `id` rolling out, recording what it replaces (the
/// first time only), fenced on `lease`; its event only when the status
/// changes.
pub async fn start(db: &Db, lease: &JobLease, id: i64, started: &Started<'_>) -> Result<()> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    jobs::check_lease(&mut tx, lease).await?;
    let status: String = sqlx::query_scalar("SELECT status FROM deployments WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE deployments SET status = 'rolling_out', message = $1, \
         replaced_image = COALESCE(replaced_image, $2), deployment_uid = COALESCE(deployment_uid, $3), \
         deadline_at = COALESCE(deadline_at, $4), updated_at = $5, \
         replaced_revision = CASE WHEN replaced_image IS NULL THEN $7 ELSE replaced_revision END \
         WHERE id = $6",
    )
    .bind(&started.message)
    .bind(started.replaced_image)
    .bind(started.uid)
    .bind(started.deadline_at)
    .bind(now)
    .bind(id)
    .bind(started.replaced_revision)
    .execute(&mut *tx)
    .await?;
    if status != DeploymentStatus::RollingOut.as_str() {
        event(
            &mut tx,
            id,
            DeploymentStatus::RollingOut,
            started.message.clone(),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Marks deployment `id`'s verification started (the first time only),
/// its message saying what it checks, with an event, fenced on `lease`.
pub async fn verifying(db: &Db, lease: &JobLease, id: i64, message: &str) -> Result<()> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    jobs::check_lease(&mut tx, lease).await?;
    let started = sqlx::query(
        "UPDATE deployments SET verify_started_at = $1, message = $2, updated_at = $1 \
         WHERE id = $3 AND verify_started_at IS NULL AND status = 'rolling_out'",
    )
    .bind(now)
    .bind(message)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if started {
        event(
            &mut tx,
            id,
            DeploymentStatus::RollingOut,
            message.to_string(),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Records on lane `lane_id` the Service its copy got, fenced on `lease`.
pub async fn set_lane_service(
    db: &Db,
    lease: &JobLease,
    lane_id: i64,
    service: Option<&str>,
) -> Result<()> {
    let mut tx = db.begin_write().await?;
    jobs::check_lease(&mut tx, lease).await?;
    sqlx::query("UPDATE lanes SET service = $1 WHERE id = $2")
        .bind(service)
        .bind(lane_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Ends deployment `id` (`succeeded` or `failed`, `message` saying how),
/// fenced on `lease`: its event, the rollout lock given back, the job
/// closed and the audit row, in one transaction. A deployment already
/// ended is left as it is (false).
pub async fn finish(
    db: &Db,
    lease: &JobLease,
    id: i64,
    status: DeploymentStatus,
    message: &str,
) -> Result<bool> {
    debug_assert!(status.is_final());
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    jobs::check_lease(&mut tx, lease).await?;
    let ended = sqlx::query(
        "UPDATE deployments SET status = $1, message = $2, updated_at = $3, finished_at = $3 \
         WHERE id = $4 AND status IN ('pending', 'rolling_out')",
    )
    .bind(status.as_str())
    .bind(message)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if ended {
        event(&mut tx, id, status, message.to_string(), now).await?;
        rollout_locks::give_back_deployment(&mut tx, id).await?;
        let done = get_in(&mut tx, id).await?;
        audit::record(
            &mut tx,
            &AuditActor::engine(),
            Change {
                action: if status == DeploymentStatus::Succeeded {
                    "deployment.succeed"
                } else {
                    "deployment.fail"
                },
                target_type: "deployment",
                target_id: Some(id),
                summary: format!("fast-path deployment {id} {status}: {message}"),
                before: None,
                after: snapshot(&done),
            },
        )
        .await?;
    }
    jobs::close(&mut tx, lease, now).await?;
    tx.commit().await?;
    Ok(ended)
}

/// App `app_id`'s lanes, by name.
pub async fn lanes_of(pool: &AnyPool, app_id: i64) -> Result<Vec<Lane>> {
    let rows = sqlx::query(&format!(
        "SELECT {LANE_COLUMNS} FROM lanes l WHERE l.app_id = $1 ORDER BY l.slug"
    ))
    .bind(app_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(lane_from_row).collect::<Result<_, _>>()?)
}

/// Asks for lane `slug` of app `app_id` to be removed (now): marked
/// `removing`, so no deploy goes to it any more, and its removal job due
/// at once. Refused while a deployment to the lane is in flight.
pub async fn request_lane_removal(
    db: &Db,
    app_id: i64,
    slug: &str,
    who: &AuditActor,
) -> Result<Lane> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(&format!(
        "SELECT {LANE_COLUMNS} FROM lanes l WHERE l.app_id = $1 AND l.slug = $2{}",
        locking(db)
    ))
    .bind(app_id)
    .bind(slug)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::NotFound(format!("app {app_id} has no lane {slug}")))?;
    let lane = lane_from_row(&row)?;
    let busy: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM deployments WHERE app_id = $1 AND lane = $2 AND status IN ('pending', 'rolling_out') \
         ORDER BY id LIMIT 1",
    )
    .bind(app_id)
    .bind(slug)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(busy) = busy {
        return Err(Error::Conflict(format!(
            "deployment {busy} to lane {slug} is still rolling out; remove the lane once it ends"
        )));
    }
    sqlx::query("UPDATE lanes SET state = 'removing' WHERE id = $1")
        .bind(lane.id)
        .execute(&mut *tx)
        .await?;
    let subject = Subject::Lane { id: lane.id };
    sqlx::query(
        "UPDATE jobs SET run_at = $1, updated_at = $1 WHERE subject_kind = $2 AND subject_id = $3 \
         AND state = 'queued'",
    )
    .bind(now)
    .bind(subject.kind())
    .bind(lane.id)
    .execute(&mut *tx)
    .await?;
    jobs::enqueue_once(&mut tx, LANE_JOB, subject, now).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "lane.remove",
            target_type: "lane",
            target_id: Some(lane.id),
            summary: format!(
                "asked to remove lane {slug} ({}) of app {app_id}",
                lane.deployment
            ),
            before: snapshot(&lane),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Lane {
        state: "removing".into(),
        ..lane
    })
}

/// A lane's removal job's lane, with where it lives.
#[derive(Debug, Clone)]
pub struct LaneTarget {
    pub lane: Lane,
    pub cluster_id: i64,
    pub namespace: String,
}

/// What a lane's removal job does now.
pub enum LaneDue {
    /// The lane is gone already.
    Gone,
    /// Not idle long enough (or a deploy to it is in flight): the job is
    /// given back already, to run again at.
    Later(i64),
    /// Marked `removing`: remove its objects, then [`lane_removed`].
    Remove(LaneTarget),
}

/// Decides, fenced on `lease`, whether lane `lane_id` is due for removal
/// (asked for, or idle for `ttl_ms`), and marks it `removing` when it is.
pub async fn lane_due(db: &Db, lease: &JobLease, lane_id: i64, ttl_ms: i64) -> Result<LaneDue> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    jobs::check_lease(&mut tx, lease).await?;
    let row = sqlx::query(&format!(
        "SELECT {LANE_COLUMNS}, a.cluster_id, a.namespace FROM lanes l JOIN apps a ON a.id = l.app_id \
         WHERE l.id = $1{}",
        locking(db).replace("UPDATE", "UPDATE OF l")
    ))
    .bind(lane_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(LaneDue::Gone);
    };
    let lane = lane_from_row(&row)?;
    if lane.state == "active" {
        let idle_at = lane.deployed_at + ttl_ms;
        if now < idle_at {
            return put_off(tx, lease, idle_at).await;
        }
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deployments WHERE app_id = $1 AND lane = $2 \
             AND status IN ('pending', 'rolling_out')",
        )
        .bind(lane.app_id)
        .bind(&lane.lane)
        .fetch_one(&mut *tx)
        .await?;
        if busy > 0 {
            return put_off(tx, lease, now + 60_000).await;
        }
        sqlx::query("UPDATE lanes SET state = 'removing' WHERE id = $1")
            .bind(lane.id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(LaneDue::Remove(LaneTarget {
        cluster_id: row.try_get("cluster_id")?,
        namespace: row.try_get("namespace")?,
        lane: Lane {
            state: "removing".into(),
            ..lane
        },
    }))
}

/// Gives the lane's job back to run at `at`, in the transaction that read
/// the lane (its row locked on PostgreSQL): a removal asked for meanwhile
/// waits for this to commit, then moves the job to now, and is never
/// pushed back to `at`.
async fn put_off(mut tx: Tx, lease: &JobLease, at: i64) -> Result<LaneDue> {
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_at = $1, attempts = 0, \
         last_error = 'waiting until the lane has been idle for the lane TTL', updated_at = $2 \
         WHERE id = $3 AND lease_owner = $4 AND state = 'queued'",
    )
    .bind(at)
    .bind(now_ms())
    .bind(lease.job_id)
    .bind(&lease.owner)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(LaneDue::Later(at))
}

/// Row locking for a lane read that decides a write: PostgreSQL's `FOR
/// UPDATE` (SQLite's writer lock, taken by `begin_write`, already
/// serialises them).
fn locking(db: &Db) -> &'static str {
    match db.kind {
        DbKind::Postgres => " FOR UPDATE",
        DbKind::Sqlite => "",
    }
}

/// Lane `lane` is removed from its cluster: its row deleted, the job
/// closed and the audit row written, fenced on `lease`.
pub async fn lane_removed(db: &Db, lease: &JobLease, lane: &Lane, note: &str) -> Result<()> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    jobs::check_lease(&mut tx, lease).await?;
    sqlx::query("DELETE FROM lanes WHERE id = $1")
        .bind(lane.id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &AuditActor::engine(),
        Change {
            action: "lane.removed",
            target_type: "lane",
            target_id: Some(lane.id),
            summary: format!("removed lane {} ({}): {note}", lane.lane, lane.deployment),
            before: snapshot(lane),
            after: None,
        },
    )
    .await?;
    jobs::close(&mut tx, lease, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Lane `id`, if it is there.
pub async fn lane(pool: &AnyPool, id: i64) -> Result<Option<Lane>> {
    let row = sqlx::query(&format!(
        "SELECT {LANE_COLUMNS} FROM lanes l WHERE l.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(lane_from_row).transpose()?)
}

/// The image repositories of the release items bound to app `app_id`:
/// those with a stage on it, and those on its node or above with a stage
/// on the same workload elsewhere (a Deployment and container of the same
/// names: the app's staging and prod counterparts). A fast-path image must
/// be in one of them, when there are any.
pub async fn bound_repositories(pool: &AnyPool, app_id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT r.image_repository FROM apps a \
         JOIN nodes an ON an.id = a.node_id \
         JOIN release_items r ON TRUE \
         JOIN nodes rn ON rn.id = r.node_id \
         JOIN release_stages s ON s.release_item_id = r.id \
         JOIN apps sa ON sa.id = s.app_id \
         WHERE a.id = $1 AND (sa.id = a.id OR ( \
             sa.deployment = a.deployment AND sa.container = a.container \
             AND (an.path = rn.path OR substr(an.path, 1, length(rn.path) + 1) = rn.path || '/'))) \
         ORDER BY 1",
    )
    .bind(app_id)
    .fetch_all(pool)
    .await?)
}

/// A work order's stage on an app, for the app's page.
#[derive(Debug, Clone)]
pub struct StageOnApp {
    pub work_order_id: i64,
    pub title: String,
    pub version: String,
    pub stage: String,
    pub status: String,
    pub at: i64,
}

/// The last `limit` work-order stages on app `app_id` that ran, newest
/// first.
pub async fn recent_stages(pool: &AnyPool, app_id: i64, limit: i64) -> Result<Vec<StageOnApp>> {
    let rows = sqlx::query(
        "SELECT s.work_order_id, w.title, w.version, s.name, s.status, \
         COALESCE(s.finished_at, s.started_at) AS at \
         FROM stage_runs s JOIN work_orders w ON w.id = s.work_order_id \
         WHERE s.app_id = $1 AND s.started_at IS NOT NULL \
         ORDER BY COALESCE(s.finished_at, s.started_at) DESC, s.id DESC LIMIT $2",
    )
    .bind(app_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StageOnApp {
                work_order_id: r.try_get("work_order_id")?,
                title: r.try_get("title")?,
                version: r.try_get("version")?,
                stage: r.try_get("name")?,
                status: r.try_get("status")?,
                at: r.try_get("at")?,
            })
        })
        .collect()
}
