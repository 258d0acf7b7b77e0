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
//! - a rolling deploy under way goes on to its end when the stop leaves
//!   rolling updates alone; when it pauses them, the Deployment is paused
//!   (`spec.paused`), the stage marked paused by that stop, and the job
//!   held. Once no pausing stop covers the stage any more, its next run
//!   resumes the Deployment first (so does a rollback of the stage, which
//!   is never held).
//!
//! The time a stage was held does not count against its overall deadline:
//! lifting the stop moves the deadline on by as long as it lasted.

use k8s_openapi::api::apps::v1::Deployment;

use super::stage::{Stage, Written};
use super::{Context, Done, Error};
use crate::db::deployments::DeployTarget;
use crate::db::jobs::Job;
use crate::db::line_stops::{self, LineStop};
use crate::domain::fast_path::DeploymentStatus;
use crate::kube::KubeError;
use crate::kube::deployment::{self, Progress};

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
        let live = stage.read(&client).await?;
        stage.check_same_object(&live)?;
        let done = matches!(deployment::evaluate(&live), Progress::Complete);
        if !done && !paused(&live) {
            set_paused(stage, &client, live, true).await?;
        }
        if !done || target.paused_by_stop.is_some() {
            line_stops::mark_paused(
                &ctx.db,
                &job.lease,
                stage.order_id,
                stage.position,
                Some(stop.id),
            )
            .await?;
        }
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
    line_stops::mark_paused(
        &ctx.db,
        &job.lease,
        stage.order_id,
        stage.position,
        Some(stop_id),
    )
    .await?;
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
    } else if let Some(live) = client
        .deployment(&target.namespace, &target.deployment)
        .await?
        && paused(&live)
        && stage.check_same_object(&live).is_ok()
    {
        set_paused(stage, &client, live, false).await?;
    }
    line_stops::mark_paused(&ctx.db, &job.lease, stage.order_id, stage.position, None).await?;
    Ok(())
}

/// Pauses or resumes a Rollout as `view` read it; a Rollout changed since
/// is read again on the job's next try.
async fn set_rollout_paused(
    client: &crate::kube::ClusterClient,
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

async fn set_paused(
    stage: &Stage,
    client: &crate::kube::ClusterClient,
    live: Deployment,
    want: bool,
) -> Result<(), Error> {
    let target = &stage.target;
    let write = |d: Deployment| async move {
        let version = d.metadata.resource_version.unwrap_or_default();
        client
            .set_paused(&target.namespace, &target.deployment, want, &version)
            .await
    };
    match stage
        .write_until(client, live, |d| paused(d) == want, |_| None, write)
        .await?
    {
        Written::Done(_) => Ok(()),
        Written::Refused(reason) => Err(Error::Fail(reason)),
    }
}

/// What a fast-path deploy does about the line stops: held while one
/// covers its app and it has not begun; one under way goes on.
pub(super) async fn deployment(ctx: &Context, t: &DeployTarget) -> Result<Option<Done>, Error> {
    if t.status != DeploymentStatus::Pending {
        return Ok(None);
    }
    Ok(line_stops::covering(&ctx.db.pool, &[&t.app_path])
        .await?
        .map(|stop| held(&stop)))
}
