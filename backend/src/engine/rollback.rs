//! The rollback of a stage (rule 6). The rule: a rollback restores this
//! stage's container image and nothing else, and only while the rest of
//! the pod template is as the stage's deploy left it; a template someone
//! else changed since (another container's image, an env var, a restart
//! annotation) is refused, listing the changes, and the stage stays as it
//! was. An owner may ask to restore the whole template the deploy replaced
//! anyway — the template of the ReplicaSet of the replaced revision, as
//! `kubectl rollout undo` does, else the one recorded before the deploy.
//! A rollback never writes over a later deploy (our container runs another
//! image) or onto another object (another uid). Writes only while the live
//! template differs, follows the rollout, and reports `rolled_back`,
//! `refused` (nothing written) or `failed` — after a failure, with that
//! failure kept in the message.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::hold;
use super::stage::{self, Followed, Stage, Written};
use super::{Context, Done, Error, Kind};
use crate::db::jobs::Job;
use crate::db::work_orders::{StageRecord, StageTarget};
use crate::domain::work_order::{JobKind, Outcome, StageStatus};
use crate::kube::{ClusterClient, KubeError, deployment};

/// Rolls a stage's Deployment back to what its deploy replaced.
pub(super) struct Rollback;

/// Before a canary stage's rollback writes: its Rollout, unless it is in
/// the middle of a canary (where restoring the template is Kruise's own
/// direct rollback), is disabled, so the restored template rolls natively
/// rather than as a new canary from step 1.
async fn step_aside(stage: &Stage, client: &ClusterClient) -> Result<(), Error> {
    let target = &stage.target;
    if !client.serves_rollouts().await? {
        return Ok(());
    }
    let Some(view) = client
        .rollout(&target.namespace, &target.deployment)
        .await?
    else {
        return Ok(());
    };
    if !view.managed_by_rollway || view.disabled || view.phase == "Progressing" {
        return Ok(());
    }
    match client.disable_rollout(&target.namespace, &view).await {
        Ok(_) => Ok(()),
        Err(KubeError::Conflict(m)) => Err(Error::Retry(m)),
        Err(e) => Err(e.into()),
    }
}

impl Kind for Rollback {
    const NAME: &'static str = JobKind::Rollback.as_str();

    async fn run(&self, ctx: &Context, job: &Job) -> Result<Done, Error> {
        let stage = Stage::load(ctx, job).await?;
        let target = &stage.target;
        if target.status != StageStatus::RollingBack {
            return Ok(stage.nothing_to_do());
        }
        // A rollback is never held; a Deployment a line stop paused rolls
        // again.
        Box::pin(hold::resume(ctx, job, &stage)).await?;
        stage.check_deadline()?;
        let client = stage.client(ctx).await?;
        let live = stage.read(&client).await?;
        if let Some(reason) = deployment::replaced(target.deployment_uid.as_deref(), &live) {
            return refused(ctx, job, &stage, format!("{}: {reason}", stage.name())).await;
        }
        let Some(replaced_image) = target.replaced_image.clone() else {
            return Err(Error::Fail(
                "nothing to restore: the stage never recorded what it replaced".into(),
            ));
        };
        let restore = if target.rollback_whole_template {
            Restore::Template(Box::new(whole_template(&stage, &client, &live).await?))
        } else {
            Restore::Image(replaced_image)
        };
        if target.canary.is_some() {
            step_aside(&stage, &client).await?;
        }
        let restored = |d: &Deployment| restore.done(d, &target.container);
        let write_back = |mut next: Deployment| {
            let client = &client;
            let restore = &restore;
            async move {
                match restore {
                    Restore::Template(whole) => {
                        next.spec.template = whole.0.clone();
                        client.replace_deployment(&next).await
                    }
                    Restore::Image(image) => {
                        let version = next.metadata.resource_version.unwrap_or_default();
                        client
                            .patch_image(
                                &target.namespace,
                                &target.deployment,
                                &target.container,
                                image,
                                &version,
                            )
                            .await
                    }
                }
            }
        };
        let refuse = |d: &Deployment| refusal(&stage, d);
        let live =
            match Box::pin(stage.write_until(&client, live, restored, refuse, write_back)).await? {
                Written::Done(live) => *live,
                Written::Refused(reason) => return refused(ctx, job, &stage, reason).await,
            };
        // Onto a template that was failing before the deploy, the rollback
        // is over once the controller has taken it: waiting for it to
        // become available would only wait for its old failure again.
        let failing_before = target.replaced_failing;
        let taken = |d: &Deployment| {
            failing_before
                && d.status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0)
                    >= d.metadata.generation.unwrap_or(0)
        };
        let followed =
            Box::pin(stage.follow(ctx, job, &client, live, false, restored, taken)).await?;
        match followed {
            Followed::Complete(d) => {
                let now = deployment::revision(&d.metadata);
                let message = format!(
                    "restored {}: {} runs {} again{}{}",
                    restore.source(target),
                    stage.name(),
                    deployment::container_image(&d, &target.container).unwrap_or("?"),
                    now.as_deref()
                        .map(|r| format!(" (now revision {r})"))
                        .unwrap_or_default(),
                    if failing_before {
                        "; as before this stage deployed, it is past its progress deadline"
                    } else {
                        ""
                    }
                );
                let record = StageRecord {
                    restored_revision: target.replaced_revision.clone(),
                    ..StageRecord::default()
                };
                stage
                    .report(ctx, job, Outcome::Succeeded, message, record)
                    .await
            }
            Followed::Failed(_, message) => {
                let message = with_cause(target, format!("the rollback failed: {message}"));
                stage
                    .report(ctx, job, Outcome::Failed, message, StageRecord::default())
                    .await
            }
            Followed::Moot(note) => Ok(Done::Moot(note)),
        }
    }

    async fn fail(&self, ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
        // The cause of a rollback that follows a failure stays in view.
        let message = match Stage::load(ctx, job).await {
            Ok(stage) => with_cause(
                &stage.target,
                format!("the rollback could not run: {message}"),
            ),
            Err(_) => message,
        };
        stage::fail(ctx, job, message).await
    }
}

/// What a rollback writes back.
enum Restore {
    /// The container's image the deploy replaced, nothing else.
    Image(String),
    /// The whole pod template the deploy replaced, and where it came from.
    Template(Box<(PodTemplateSpec, String)>),
}

impl Restore {
    fn done(&self, d: &Deployment, container: &str) -> bool {
        match self {
            Restore::Image(image) => {
                deployment::container_image(d, container) == Some(image.as_str())
            }
            Restore::Template(whole) => deployment::same_template(&d.spec.template, &whole.0),
        }
    }

    fn source(&self, target: &StageTarget) -> String {
        match self {
            Restore::Image(image) => format!(
                "the image {image}{}",
                target
                    .replaced_revision
                    .as_deref()
                    .map(|r| format!(" of revision {r}"))
                    .unwrap_or_default()
            ),
            Restore::Template(whole) => format!("the whole pod template of {}", whole.1),
        }
    }
}

/// The whole template the deploy replaced: the ReplicaSet of the replaced
/// revision's (as `kubectl rollout undo`), else the one recorded.
async fn whole_template(
    stage: &Stage,
    client: &ClusterClient,
    live: &Deployment,
) -> Result<(PodTemplateSpec, String), Error> {
    let target = &stage.target;
    let from_history = match &target.replaced_revision {
        Some(revision) => match client.replica_sets_of(live).await {
            Ok(sets) => sets
                .iter()
                .find(|rs| deployment::revision(&rs.metadata).as_deref() == Some(revision.as_str()))
                .and_then(deployment::template_of)
                .map(|t| (t, format!("revision {revision}"))),
            Err(KubeError::Transient(m)) => return Err(Error::Retry(m)),
            Err(_) => None,
        },
        None => None,
    };
    let stored = target
        .replaced_template
        .as_deref()
        .and_then(|t| serde_json::from_str::<PodTemplateSpec>(t).ok())
        .map(|t| (t, "the pod template recorded before the deploy".to_string()));
    from_history.or(stored).ok_or_else(|| {
        Error::Fail("nothing to restore: the replaced pod template is unknown".into())
    })
}

/// Why the rollback must not write to `d` (see the module's rule).
fn refusal(stage: &Stage, d: &Deployment) -> Option<String> {
    let target = &stage.target;
    let replaced = target
        .replaced_template
        .as_deref()
        .and_then(|t| serde_json::from_str::<PodTemplateSpec>(t).ok());
    deployment::rollback_refusal(
        &stage.name(),
        replaced.as_ref(),
        &target.container,
        &target.image,
        d,
        target.rollback_whole_template,
    )
}

/// Reports a rollback that wrote nothing: the stage goes back to where it
/// was, the reason (and a failure that came before) on the timeline.
async fn refused(ctx: &Context, job: &Job, stage: &Stage, reason: String) -> Result<Done, Error> {
    let message = with_cause(
        &stage.target,
        format!("the rollback was refused, nothing written: {reason}"),
    );
    stage
        .report(ctx, job, Outcome::Refused, message, StageRecord::default())
        .await
}

/// `message`, after the failure that led to the rollback when there was one.
fn with_cause(target: &StageTarget, message: String) -> String {
    match target.rollback_from {
        Some(StageStatus::Failed) if !target.message.is_empty() => {
            format!("{} — then {message}", target.message)
        }
        _ => {
            let mut message = message;
            if let Some(first) = message.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            message
        }
    }
}
