//! The rollback of a stage (rule 6): restores the pod template the stage's
//! deploy replaced — the template of the ReplicaSet of the replaced
//! revision, as `kubectl rollout undo` does, else the template recorded
//! before the deploy — unless someone changed the Deployment since; writes
//! only while the live template differs, follows the rollout, and reports
//! `rolled_back` (succeeded) or `failed`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::stage::{self, Followed, Stage};
use super::{Context, Done, Error, Kind};
use crate::db::jobs::Job;
use crate::db::work_orders::StageRecord;
use crate::domain::work_order::{JobKind, Outcome, StageStatus};
use crate::kube::{KubeError, deployment};

/// Rolls a stage's Deployment back to what its deploy replaced.
pub(super) struct Rollback;

impl Kind for Rollback {
    const NAME: &'static str = JobKind::Rollback.as_str();

    async fn run(&self, ctx: &Context, job: &Job) -> Result<Done, Error> {
        let stage = Stage::load(ctx, job).await?;
        let target = &stage.target;
        if target.status != StageStatus::RollingBack {
            return Ok(stage.nothing_to_do());
        }
        let client = stage.client(ctx).await?;
        let live = stage.read(&client).await?;
        // What to restore: the template of the ReplicaSet of the replaced
        // revision (as `kubectl rollout undo`), else the template recorded
        // when the stage deployed.
        let wanted_revision = target.replaced_revision.clone();
        let from_history = match &wanted_revision {
            Some(revision) => match client.replica_sets_of(&live).await {
                Ok(sets) => sets
                    .iter()
                    .find(|rs| {
                        deployment::revision(&rs.metadata).as_deref() == Some(revision.as_str())
                    })
                    .and_then(deployment::template_of),
                Err(KubeError::Transient(m)) => return Err(Error::Retry(m)),
                Err(_) => None,
            },
            None => None,
        };
        let stored = target
            .replaced_template
            .as_deref()
            .and_then(|t| serde_json::from_str::<PodTemplateSpec>(t).ok());
        let (restore, source) = match (from_history, stored) {
            (Some(t), _) => (
                t,
                format!("revision {}", wanted_revision.clone().unwrap_or_default()),
            ),
            (None, Some(t)) => (t, "the pod template recorded before the deploy".to_string()),
            (None, None) => {
                return Err(Error::Fail(
                    "nothing to restore: the replaced pod template is unknown".into(),
                ));
            }
        };
        let restore_image = deployment::template_image(&restore, &target.container)
            .unwrap_or("?")
            .to_string();
        let restored = |d: &Deployment| deployment::same_template(&d.spec.template, &restore);
        let moved_on = |d: &Deployment| {
            let current = deployment::container_image(d, &target.container).unwrap_or("?");
            (current != target.image).then(|| {
                format!(
                    "{} now runs {current}, not {} that this stage deployed; not rolling back over a later change",
                    stage.name(),
                    target.image
                )
            })
        };
        let write_back = |mut next: Deployment| {
            let client = &client;
            next.spec.template = restore.clone();
            async move { client.replace_deployment(&next).await }
        };
        let live = stage
            .write_until(&client, live, restored, moved_on, write_back)
            .await?;
        let followed = stage
            .follow(ctx, job, &client, live, false, restored)
            .await?;
        match followed {
            Followed::Complete(d) => {
                let now = deployment::revision(&d.metadata);
                let message = format!(
                    "restored {source}: {} runs {restore_image} again{}",
                    stage.name(),
                    now.as_deref()
                        .map(|r| format!(" (now revision {r})"))
                        .unwrap_or_default()
                );
                let record = StageRecord {
                    restored_revision: wanted_revision,
                    ..StageRecord::default()
                };
                stage
                    .report(ctx, job, Outcome::Succeeded, message, record)
                    .await
            }
            Followed::Failed(_, message) => {
                stage
                    .report(
                        ctx,
                        job,
                        Outcome::Failed,
                        format!("rollback failed: {message}"),
                        StageRecord::default(),
                    )
                    .await
            }
            Followed::Moot(note) => Ok(Done::Moot(note)),
        }
    }

    async fn fail(&self, ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
        stage::fail(ctx, job, message).await
    }
}
