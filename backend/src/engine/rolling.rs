//! The rolling deploy of a stage: records what the stage replaces and the
//! Deployment's uid (before any write, so a resumed job knows it, follows
//! that object only, and a rollback can restore it), sets the container's
//! image only when the live template differs (so a resumed job never
//! writes twice), follows the rollout until it completes, fails or passes
//! the stage's overall deadline, and reports `verifying`, then `succeeded`
//! (for a Deployment scaled to zero: that nothing ran) or `failed`.

use super::hold;
use super::stage::{self, Followed, Stage};
use super::{Context, Done, Error, Kind};
use crate::db::jobs::Job;
use crate::db::work_orders::StageRecord;
use crate::domain::work_order::{JobKind, Outcome, StageStatus};
use crate::kube::deployment;

/// Deploys the order's image to a stage's Deployment.
pub(super) struct RollingDeploy;

impl Kind for RollingDeploy {
    const NAME: &'static str = JobKind::Deploy.as_str();

    async fn run(&self, ctx: &Context, job: &Job) -> Result<Done, Error> {
        let stage = Stage::load(ctx, job).await?;
        let target = &stage.target;
        if !matches!(
            target.status,
            StageStatus::Deploying | StageStatus::Verifying
        ) {
            return Ok(stage.nothing_to_do());
        }
        if let Some(held) = Box::pin(hold::stage(ctx, job, &stage, true)).await? {
            return Ok(held);
        }
        stage.check_deadline()?;
        let client = stage.client(ctx).await?;
        let live = stage.read(&client).await?;
        stage.check_same_object(&live)?;
        let image = stage.current_image(&live)?;
        stage.remember_replaced(ctx, job, &live, &image).await?;
        let live = Box::pin(stage.set_image(&client, live)).await?;
        let followed = Box::pin(stage.follow(
            ctx,
            job,
            &client,
            live,
            target.status != StageStatus::Verifying,
            |d| stage.runs_image(d),
            |_| false,
        ))
        .await?;
        match followed {
            Followed::Complete(d) => {
                let new_revision = deployment::revision(&d.metadata);
                let revision = new_revision
                    .as_deref()
                    .map(|r| format!(" (revision {r})"))
                    .unwrap_or_default();
                let message = if deployment::scaled_to_zero(&d) {
                    format!(
                        "{} is scaled to zero — nothing to verify: its template now names {}{revision}, \
                         but no pod runs it",
                        stage.name(),
                        target.image,
                    )
                } else {
                    format!("{} runs {}{revision}", stage.name(), target.image)
                };
                let record = StageRecord {
                    new_revision,
                    ..StageRecord::default()
                };
                stage
                    .report(ctx, job, Outcome::Succeeded, message, record)
                    .await
            }
            Followed::Failed(d, message) => {
                let record = StageRecord {
                    new_revision: d.as_ref().and_then(|d| deployment::revision(&d.metadata)),
                    // The automatic rollback's own deadline.
                    deadline_ms: d.as_ref().map(|d| stage.deadline_ms(d)),
                    ..StageRecord::default()
                };
                stage
                    .report(ctx, job, Outcome::Failed, message, record)
                    .await
            }
            Followed::Moot(note) => Ok(Done::Moot(note)),
        }
    }

    async fn fail(&self, ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
        stage::fail(ctx, job, message).await
    }
}
