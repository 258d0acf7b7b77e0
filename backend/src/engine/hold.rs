//! Line stops as the engine obeys them (`db::line_stops`). A job that
//! would move a rollout on asks [`stage`] (or [`deployment`]) before it
//! does anything else, while the stop of its stage's item or app is not
//! lifted:
//!
//! - a rolling deploy that has not written yet, a canary (whose steps are
//!   then approved by no one, Rollway included) and a fast-path deploy not
//!   begun are held ([`Done::Held`]): given back to run once the stop is
//!   lifted (a verification, a rollback and a lane's removal never are);
//!   a canary under way has its Rollout paused too (`strategy.paused`), so
//!   that not even a timed step ends during the stop;
//! - a rolling deploy under way (a stage's, or a fast-path deploy's not
//!   being verified) goes on to its end when the stop leaves rolling
//!   updates alone; when it pauses them, the Deployment is paused
//!   (`spec.paused`), the stage or deployment marked paused by that stop,
//!   and the job held. Once no pausing stop covers the stage any more, its next run
//!   resumes the Deployment first (so does a rollback of the stage, which
//!   is never held).
//!
//! The time a stage was held does not count against its overall deadline:
//! lifting the stop moves the deadline on by as long as it lasted.

use k8s_openapi::api::apps::v1::Deployment;

use super::stage::{Stage, Workload, Written};
use super::{Context, Done, Error};
use crate::db::deployments::DeployTarget;
use crate::db::jobs::Job;
use crate::db::line_stops::{self, LineStop, Paused};
use crate::domain::fast_path::DeploymentStatus;
use crate::kube::deployment::{self, Progress};
use crate::kube::{ClusterClient, KubeError};

/// How often a held job looks again by itself (lifting the stop runs it
/// at once).
pub(super) const LOOK_AGAIN_MS: i64 = 60_000;

fn held(stop: &LineStop) -> Done {
    Done::Held {
        stop: stop.id,
        note: format!("held: {}", stop.describe()),
    }
}

/// Whether `live` has its rollout paused.
fn paused(live: &Deployment) -> bool {
    live.spec.paused == Some(true)
}

/// What a stage job does about the line stops: `Some` when it is to wait
/// (see the module notes). `rolling`: the job is a rolling deploy.
pub(super) async fn stage(
    ctx: &Context,
    job: &Job,
    stage: &Stage,
    rolling: bool,
) -> Result<Option<Done>, Error> {
    let target = &stage.target;
    let stop = line_stops::covering(&ctx.db.pool, &[&target.item_path, &target.app_path]).await?;
    let Some(stop) = stop else {
        resume(ctx, job, stage).await?;
        return Ok(None);
    };
    let under_way = target.replaced_image.is_some();
    if !rolling {
        // A canary takes no step during a stop, a timed pause's end
        // included: its Rollout is paused whatever the stop says of
        // rolling updates.
        if under_way && target.paused_by_stop != Some(stop.id) {
            pause_rollout(ctx, job, stage, stop.id).await?;
        }
        return Ok(Some(held(&stop)));
    }
    if !under_way {
        return Ok(Some(held(&stop)));
    }
    if !stop.pause_rollouts {
        // Left to finish; a pause by an earlier stop ends.
        resume(ctx, job, stage).await?;
        return Ok(None);
    }
    if target.paused_by_stop != Some(stop.id) {
        let client = stage.client(ctx).await?;
        pause_rolling(
            ctx,
            job,
            &client,
            &stage.workload(),
            (stage_mark(stage), target.paused_by_stop),
            stop.id,
        )
        .await?;
    }
    Ok(Some(held(&stop)))
}

/// Pauses the canary stage's Rollout (when there is one, Rollway's) and
/// marks the stage paused by stop `stop_id`.
async fn pause_rollout(ctx: &Context, job: &Job, stage: &Stage, stop_id: i64) -> Result<(), Error> {
    let target = &stage.target;
    let client = stage.client(ctx).await?;
    if let Some(view) = client
        .rollout(&target.namespace, &target.deployment)
        .await?
        && view.managed_by_rollway
        && !view.paused
    {
        set_rollout_paused(&client, &target.namespace, &view, true).await?;
    }
    line_stops::mark_paused(&ctx.db, &job.lease, stage_mark(stage), Some(stop_id)).await?;
    Ok(())
}

/// Resumes the stage's Deployment (a canary's: its Rollout) when a line
/// stop paused it, and clears the mark (fenced on the job's lease).
/// Nothing when none did.
pub(super) async fn resume(ctx: &Context, job: &Job, stage: &Stage) -> Result<(), Error> {
    if stage.target.paused_by_stop.is_none() {
        return Ok(());
    }
    let client = stage.client(ctx).await?;
    let target = &stage.target;
    if target.canary.is_some() {
        // Kruise pauses a canary's Deployment itself: only the Rollout is
        // Rollway's to resume.
        if let Some(view) = client
            .rollout(&target.namespace, &target.deployment)
            .await?
            && view.managed_by_rollway
            && view.paused
        {
            set_rollout_paused(&client, &target.namespace, &view, false).await?;
        }
    } else {
        resume_rolling(&client, &stage.workload()).await?;
    }
    line_stops::mark_paused(&ctx.db, &job.lease, stage_mark(stage), None).await?;
    Ok(())
}

/// Pauses or resumes a Rollout as `view` read it; a Rollout changed since
/// is read again on the job's next try.
async fn set_rollout_paused(
    client: &ClusterClient,
    namespace: &str,
    view: &crate::kube::rollout::RolloutView,
    paused: bool,
) -> Result<(), Error> {
    match client.set_rollout_paused(namespace, view, paused).await {
        Ok(_) => Ok(()),
        Err(KubeError::Conflict(m)) => Err(Error::Retry(m)),
        Err(e) => Err(e.into()),
    }
}

/// How a stage is named when marked paused.
fn stage_mark(stage: &Stage) -> Paused {
    Paused::Stage {
        order_id: stage.order_id,
        position: stage.position,
    }
}

/// Pauses the rolling update of `w` for stop `stop` unless it is complete,
/// and marks it paused by the stop (`mark`: the rollout and the stop that
/// paused it so far).
async fn pause_rolling(
    ctx: &Context,
    job: &Job,
    client: &ClusterClient,
    w: &Workload<'_>,
    mark: (Paused, Option<i64>),
    stop: i64,
) -> Result<(), Error> {
    let live = w.read(client).await?;
    w.check_same_object(&live)?;
    let done = matches!(deployment::evaluate(&live), Progress::Complete);
    if !done && !paused(&live) {
        set_paused(w, client, live, true).await?;
    }
    if !done || mark.1.is_some() {
        line_stops::mark_paused(&ctx.db, &job.lease, mark.0, Some(stop)).await?;
    }
    Ok(())
}

/// Resumes the rolling update of `w` when its Deployment (still the one
/// written) is paused.
async fn resume_rolling(client: &ClusterClient, w: &Workload<'_>) -> Result<(), Error> {
    if let Some(live) = client.deployment(w.namespace, w.deployment).await?
        && paused(&live)
        && w.check_same_object(&live).is_ok()
    {
        set_paused(w, client, live, false).await?;
    }
    Ok(())
}

async fn set_paused(
    w: &Workload<'_>,
    client: &ClusterClient,
    live: Deployment,
    want: bool,
) -> Result<(), Error> {
    let write = |d: Deployment| async move {
        let version = d.metadata.resource_version.unwrap_or_default();
        client
            .set_paused(w.namespace, w.deployment, want, &version)
            .await
    };
    match w
        .write_until(client, live, |d| paused(d) == want, |_| None, write)
        .await?
    {
        Written::Done(_) => Ok(()),
        Written::Refused(reason) => Err(Error::Fail(reason)),
    }
}

/// What a fast-path deploy does about the line stops: held while one
/// covers its app and it has not begun; one under way goes on, or, when
/// the stop pauses rolling updates, is paused and held (not while it is
/// verified). Once no pausing stop covers it, it is resumed first.
pub(super) async fn deployment(
    ctx: &Context,
    job: &Job,
    t: &DeployTarget,
) -> Result<Option<Done>, Error> {
    let stop = line_stops::covering(&ctx.db.pool, &[&t.app_path]).await?;
    let mark = Paused::Deployment { id: t.id };
    let workload = Workload::of_deployment(t);
    match stop {
        Some(stop) if t.status == DeploymentStatus::Pending => Ok(Some(held(&stop))),
        Some(stop)
            if stop.pause_rollouts
                && t.status == DeploymentStatus::RollingOut
                && t.verify_started_at.is_none() =>
        {
            if t.paused_by_stop != Some(stop.id) {
                let client = ctx.cluster_client(t.cluster_id).await?;
                pause_rolling(
                    ctx,
                    job,
                    &client,
                    &workload,
                    (mark, t.paused_by_stop),
                    stop.id,
                )
                .await?;
            }
            Ok(Some(held(&stop)))
        }
        _ => {
            if t.paused_by_stop.is_some() {
                let client = ctx.cluster_client(t.cluster_id).await?;
                resume_rolling(&client, &workload).await?;
                line_stops::mark_paused(&ctx.db, &job.lease, mark, None).await?;
            }
            Ok(None)
        }
    }
}
