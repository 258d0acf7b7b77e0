//! The CI fast path's kinds. `fast_deploy` deploys a fast-path deployment
//! like a rolling stage: for a lane it first makes the lane's copy of the
//! app's Deployment (and Service) when it is not there, then records what
//! it replaces and the Deployment's uid before any write, sets the image
//! only while the live template differs, follows the rollout on the shared
//! watch until it completes, fails or passes its overall deadline (twice
//! the progress deadline), then runs the deployment's verification plan
//! when it has one (the smoke checks, every metric gate, the soak, as a
//! stage's; a gate that cannot be judged past its limit fails it, for no
//! one is in the loop to let it go on), and ends the deployment
//! `succeeded` or `failed`. `remove_lane` removes a lane once asked to or idle for the
//! lane TTL: it waits (put off to when the TTL would pass) while the lane
//! is deployed to, then deletes the copy's Deployment and Service (only
//! objects carrying the lane label) and forgets the lane.

use k8s_openapi::api::apps::v1::Deployment;

use super::stage::{Followed, Workload, Written};
use super::verify::{self, Checked, GatesEnd};
use super::{Context, Done, Error, Kind};
use crate::db::deployments::{self, DEPLOY_JOB, DeployTarget, LANE_JOB, LaneDue, Started};
use crate::db::jobs::{Job, Subject};
use crate::db::now_ms;
use crate::db::verify::Of;
use crate::domain::fast_path::{DeploymentStatus, LANE_LABEL, lane_name};
use crate::domain::text::duration;
use crate::domain::verify::VerifyPlan;
use crate::kube::{ClusterClient, KubeError, deployment, lane};

/// Deploys a fast-path deployment.
pub(super) struct FastDeploy;

/// Removes a lane asked to go, or idle for the lane TTL.
pub(super) struct RemoveLane;

fn deployment_id(job: &Job) -> Result<i64, Error> {
    match job.subject {
        Subject::Deployment { id } => Ok(id),
        other => Err(Error::Fail(format!(
            "a {} job works on a deployment, not on a {}",
            job.kind,
            other.kind()
        ))),
    }
}

impl Kind for FastDeploy {
    const NAME: &'static str = DEPLOY_JOB;

    async fn run(&self, ctx: &Context, job: &Job) -> Result<Done, Error> {
        let id = deployment_id(job)?;
        let t = deployments::target(&ctx.db.pool, id).await?;
        if t.status.is_final() {
            return Ok(Done::Moot(format!(
                "deployment is {}; nothing to do",
                t.status
            )));
        }
        if let Some(held) = Box::pin(super::hold::deployment(ctx, job, &t)).await? {
            return Ok(held);
        }
        // The overall deadline is the rollout's; a verification under way
        // (resumed after a restart) has its own limits.
        if let Some(at) = t
            .deadline_at
            .filter(|at| now_ms() >= *at && t.verify_started_at.is_none())
        {
            return Err(Error::Fail(format!(
                "{}/{} passed its overall deadline ({} s ago) before the engine could finish (last seen: {})",
                t.namespace,
                t.deployment,
                (now_ms() - at) / 1000,
                t.message
            )));
        }
        let client = ctx.cluster_client(t.cluster_id).await?;
        let live = match (&t.lane, t.lane_id) {
            (Some(slug), Some(lane_id)) => {
                Box::pin(ensure_lane(ctx, job, &client, &t, slug, lane_id)).await?
            }
            (Some(slug), None) => {
                return Err(Error::Fail(format!(
                    "lane {slug} was removed before the deploy to it began"
                )));
            }
            (None, _) => Workload::of_deployment(&t).read(&client).await?,
        };
        Workload::of_deployment(&t).check_same_object(&live)?;
        let current = deployment::container_image(&live, &t.container)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Fail(format!(
                    "Deployment {}/{} has no container {} (it has {})",
                    t.namespace,
                    t.deployment,
                    t.container,
                    deployment::container_names(&live).join(", ")
                ))
            })?;
        let deadline_at = t
            .deadline_at
            .unwrap_or_else(|| now_ms() + deployment::overall_deadline_ms(&live, None));
        let live_revision = deployment::revision(&live.metadata);
        if t.status == DeploymentStatus::Pending {
            let revision = live_revision
                .as_deref()
                .map(|r| format!(" (revision {r})"))
                .unwrap_or_default();
            deployments::start(
                &ctx.db,
                &job.lease,
                id,
                &Started {
                    replaced_image: t.replaced_image.as_deref().unwrap_or(&current),
                    replaced_revision: live_revision.as_deref(),
                    uid: live.metadata.uid.as_deref(),
                    deadline_at,
                    message: format!(
                        "{}/{} in {}: {current}{revision} → {}",
                        t.namespace, t.deployment, t.cluster, t.image
                    ),
                },
            )
            .await?;
        }
        let uid = live.metadata.uid.clone();
        let w = Workload {
            uid: t.deployment_uid.as_deref().or(uid.as_deref()),
            deadline_at: Some(deadline_at),
            ..Workload::of_deployment(&t)
        };
        let runs_image =
            |d: &Deployment| deployment::container_image(d, &t.container) == Some(t.image.as_str());
        let patch = |d: Deployment| {
            let client = &client;
            let t = &t;
            async move {
                let version = d.metadata.resource_version.unwrap_or_default();
                client
                    .patch_image(
                        &t.namespace,
                        &t.deployment,
                        &t.container,
                        &t.image,
                        &version,
                    )
                    .await
            }
        };
        let live = match Box::pin(w.write_until(&client, live, runs_image, |_| None, patch)).await?
        {
            Written::Done(live) => *live,
            Written::Refused(reason) => return Err(Error::Fail(reason)),
        };
        let followed = Box::pin(w.follow(ctx, &client, live, runs_image, |_| false, ())).await?;
        let (status, message) = match followed {
            Followed::Complete(d) => {
                let revision = deployment::revision(&d.metadata)
                    .map(|r| format!(" (revision {r})"))
                    .unwrap_or_default();
                match &t.verify {
                    _ if deployment::scaled_to_zero(&d) => (
                        DeploymentStatus::Succeeded,
                        format!(
                            "{} is scaled to zero — its template now names {}{revision}, but no pod runs it{}",
                            w.name(),
                            t.image,
                            if t.verify.is_some() {
                                "; nothing to verify"
                            } else {
                                ""
                            }
                        ),
                    ),
                    Some(plan) => {
                        let runs = format!("{} runs {}{revision}", w.name(), t.image);
                        verify_deployment(ctx, job, &t, &w, plan, &client, &d, runs).await?
                    }
                    None => (
                        DeploymentStatus::Succeeded,
                        format!("{} runs {}{revision}", w.name(), t.image),
                    ),
                }
            }
            Followed::Failed(_, message) => (DeploymentStatus::Failed, message),
            Followed::Moot(note) => return Ok(Done::Moot(note)),
        };
        deployments::finish(&ctx.db, &job.lease, id, status, &message).await?;
        Ok(Done::Recorded)
    }

    async fn fail(&self, ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
        let id = deployment_id(job).map_err(|_| Error::Fail(message.clone()))?;
        deployments::finish(&ctx.db, &job.lease, id, DeploymentStatus::Failed, &message).await?;
        Ok(Done::Recorded)
    }
}

/// Runs deployment `t`'s verification `plan` on `live` (its rollout
/// available, `runs` saying so): how the deployment ends. Results are
/// recorded as they are taken, so a job resumed after a restart goes on
/// where it was.
#[allow(clippy::too_many_arguments)]
async fn verify_deployment(
    ctx: &Context,
    job: &Job,
    t: &DeployTarget,
    w: &Workload<'_>,
    plan: &VerifyPlan,
    client: &ClusterClient,
    live: &Deployment,
    runs: String,
) -> Result<(DeploymentStatus, String), Error> {
    let started = match t.verify_started_at {
        Some(at) => at,
        None => {
            deployments::verifying(
                &ctx.db,
                &job.lease,
                t.id,
                &format!("{runs}; verifying: {}", plan.summary()),
            )
            .await?;
            deployments::target(&ctx.db.pool, t.id)
                .await?
                .verify_started_at
                .unwrap_or_else(now_ms)
        }
    };
    let values = verify::values(w, t.replaced_revision.as_deref(), client, live).await?;
    let checked = Checked {
        of: Of::Deployment(t.id),
        cluster_id: t.cluster_id,
        cluster: &t.cluster,
        continued_at: None,
    };
    let failed = |why: String| (DeploymentStatus::Failed, format!("{runs}, but {why}"));
    let mut said = Vec::new();
    for (i, check) in plan.smoke.iter().enumerate() {
        match verify::smoke(ctx, job, &checked, &values, i, check).await? {
            Ok(line) => said.push(line),
            Err(why) => return Ok(failed(why)),
        }
    }
    match verify::gates(ctx, job, &checked, &plan.gates, &values, 0, started).await? {
        GatesEnd::Passed(lines) => said.extend(lines),
        GatesEnd::Failed(why) => return Ok(failed(why)),
        // A stage pauses here for an owner; CI has no one to ask.
        GatesEnd::Inconclusive(why) => {
            return Ok(failed(format!(
                "{why} — a fast-path deploy fails rather than pass unverified"
            )));
        }
    }
    if let Some(soak) = plan.soak_seconds.filter(|s| *s > 0) {
        verify::sleep_until(started + i64::from(soak) * 1000).await;
        said.push(format!("soaked {}", duration(i64::from(soak) * 1000)));
    }
    Ok((
        DeploymentStatus::Succeeded,
        format!("{runs}; verified: {}", said.join("; ")),
    ))
}

/// The lane's copy of the app's Deployment, made from the app's when it is
/// not there yet, with the lane's copy of the app's Service (the app's
/// `service`, else a Service named like its Deployment, if there is one).
async fn ensure_lane(
    ctx: &Context,
    job: &Job,
    client: &ClusterClient,
    t: &DeployTarget,
    slug: &str,
    lane_id: i64,
) -> Result<Deployment, Error> {
    let existing = client.deployment(&t.namespace, &t.deployment).await?;
    if let Some(d) = &existing
        && !d
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(LANE_LABEL))
    {
        return Err(Error::Fail(format!(
            "Deployment {}/{} exists and is not a lane's (it has no {LANE_LABEL} label); \
             it is left as it is — pick another lane name",
            t.namespace, t.deployment
        )));
    }
    let base = client
        .deployment(&t.namespace, &t.base)
        .await?
        .ok_or_else(|| {
            Error::Fail(format!(
                "the app's Deployment {}/{} does not exist in cluster {}: a lane copies it",
                t.namespace, t.base, t.cluster
            ))
        })?;
    let service_name = t.base_service.as_deref().unwrap_or(&t.base);
    let base_service = client.service(&t.namespace, service_name).await?;
    let live = match existing {
        Some(d) => d,
        None => {
            let copy = lane::lane_deployment(
                &base,
                base_service.as_ref(),
                &t.deployment,
                slug,
                &t.container,
                &t.image,
            )
            .ok_or_else(|| {
                Error::Fail(format!(
                    "Deployment {}/{} has no container {} to copy into lane {slug}",
                    t.namespace, t.base, t.container
                ))
            })?;
            match client.create_deployment(&copy).await {
                Ok(created) => created,
                // Made meanwhile (a retry after a lost answer): read it.
                Err(KubeError::Conflict(_)) => Workload::of_deployment(t).read(client).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    if let Some(service) = &base_service {
        let name = lane_name(service_name, slug);
        client
            .put_service(&lane::lane_service(&base, service, &name, slug))
            .await?;
        deployments::set_lane_service(&ctx.db, &job.lease, lane_id, Some(&name)).await?;
    }
    Ok(live)
}

fn lane_id(job: &Job) -> Result<i64, Error> {
    match job.subject {
        Subject::Lane { id } => Ok(id),
        other => Err(Error::Fail(format!(
            "a {} job works on a lane, not on a {}",
            job.kind,
            other.kind()
        ))),
    }
}

impl Kind for RemoveLane {
    const NAME: &'static str = LANE_JOB;

    async fn run(&self, ctx: &Context, job: &Job) -> Result<Done, Error> {
        let id = lane_id(job)?;
        let ttl_ms = i64::try_from(ctx.settings.lane_ttl.as_millis()).unwrap_or(i64::MAX);
        let target = match deployments::lane_due(&ctx.db, &job.lease, id, ttl_ms).await? {
            LaneDue::Gone => return Ok(Done::Moot("the lane is gone already".into())),
            LaneDue::Later(at) => {
                return Ok(Done::Later {
                    at,
                    note: "waiting until the lane has been idle for the lane TTL".into(),
                });
            }
            LaneDue::Remove(target) => target,
        };
        let client = ctx.cluster_client(target.cluster_id).await?;
        let lane = &target.lane;
        let mut removed = Vec::new();
        if client
            .delete_lane_object(&target.namespace, &lane.deployment, false)
            .await?
        {
            removed.push(format!("Deployment {}", lane.deployment));
        }
        if let Some(service) = &lane.service
            && client
                .delete_lane_object(&target.namespace, service, true)
                .await?
        {
            removed.push(format!("Service {service}"));
        }
        let note = if removed.is_empty() {
            "nothing of it was left in the cluster".to_string()
        } else {
            format!("deleted {}", removed.join(" and "))
        };
        deployments::lane_removed(&ctx.db, &job.lease, lane, &note).await?;
        Ok(Done::Recorded)
    }

    async fn fail(&self, ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
        let id = lane_id(job).map_err(|_| Error::Fail(message.clone()))?;
        match deployments::lane(&ctx.db.pool, id).await? {
            Some(lane) => {
                let note = format!("could not remove it from the cluster: {message}");
                deployments::lane_removed(&ctx.db, &job.lease, &lane, &note).await?;
                Ok(Done::Recorded)
            }
            None => Ok(Done::Moot(message)),
        }
    }
}
