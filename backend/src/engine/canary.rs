//! The canary deploy of a stage through OpenKruise Rollout: checks the
//! cluster serves `rollouts.kruise.io/v1beta1`, records what the stage
//! replaces, writes the stage's Rollout (named after the Deployment,
//! labelled as Rollway's) and waits until Kruise has read it, sets the
//! container's image (Kruise's webhook then pauses the Deployment and its
//! controller runs the steps), and follows the Rollout and the Deployment
//! on their namespace watches:
//!
//! - a step paused → the stage is `paused` at it (for an owner's
//!   approve-step, or for its time); the job stays on it, so a pause
//!   survives nothing but the cluster and the jobs table: a restarted or
//!   other server's job reads where the Rollout is and goes on from there;
//! - a step approved in Rollway whose status patch did not land (the
//!   request's own patch failed) → the job approves it, on the Rollout as
//!   it reads it (one patch, whoever is first);
//! - a pause left without Rollway (its time ran out, or someone approved
//!   it in the cluster) → the stage is `deploying` again;
//! - with metric gates in the stage's verification plan, every step is
//!   judged before it pauses: Rollway writes each step as a pause for an
//!   approval, measures the gates at it (`verify.rs`), fails the stage
//!   when one fails (the canary never reaches the next step), pauses it
//!   for an owner when one cannot be judged, and otherwise lets a timed
//!   step go on itself once its time is over;
//! - the Deployment resumed by Kruise after the last step → `verifying`,
//!   then `succeeded` once it runs the new template everywhere (or the
//!   rest of the verification plan starts);
//! - no progress between pauses for the stage's overall deadline, the
//!   template changed by someone else, the Rollout or Deployment deleted →
//!   `failed` (and the item's automatic rollback applies).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;

use super::hold;
use super::stage::{self, Stage};
use super::verify::{self, GatesEnd};
use super::{Context, Done, Error, Kind};
use crate::db::jobs::Job;
use crate::db::now_ms;
use crate::db::work_orders::{self, StageRecord, StageTarget};
use crate::domain::release_item::{Canary, CanaryStep};
use crate::domain::verify::{MetricGate, Values};
use crate::domain::work_order::{JobKind, Outcome, StageStatus};
use crate::kube::deployment::{self, Progress};
use crate::kube::rollout::{self, RolloutView, Routing};
use crate::kube::{ClusterClient, DeploymentWatch, KubeError, NamespaceWatch};
use kube::api::DynamicObject;

/// How long Kruise may take to read a Rollout's new spec.
const OBSERVE_WITHIN: Duration = Duration::from_secs(60);

/// Deploys the order's image to a canary stage through its Rollout.
pub(super) struct CanaryDeploy;

/// The refusal for a cluster without OpenKruise Rollout.
pub fn not_served(cluster: &str) -> String {
    format!(
        "cluster {cluster} does not serve {} — install OpenKruise Rollout",
        rollout::API_VERSION
    )
}

impl Kind for CanaryDeploy {
    const NAME: &'static str = JobKind::Canary.as_str();

    async fn run(&self, ctx: &Context, job: &Job) -> Result<Done, Error> {
        let stage = Stage::load(ctx, job).await?;
        let target = &stage.target;
        if !matches!(
            target.status,
            StageStatus::Deploying | StageStatus::Verifying | StageStatus::Paused
        ) {
            return Ok(stage.nothing_to_do());
        }
        if let Some(held) = Box::pin(hold::stage(ctx, job, &stage, false)).await? {
            return Ok(held);
        }
        let Some(plan) = target.canary.clone() else {
            return Err(Error::Fail(format!(
                "stage {} is a canary stage without steps",
                stage.position
            )));
        };
        let client = stage.client(ctx).await?;
        if !client.serves_rollouts().await? {
            return Err(Error::Fail(not_served(&target.cluster)));
        }
        let live = stage.read(&client).await?;
        stage.check_same_object(&live)?;
        let image = stage.current_image(&live)?;
        stage.remember_replaced(ctx, job, &live, &image).await?;
        put_rollout(ctx, &stage, &client, &plan).await?;
        let live = Box::pin(stage.set_image(&client, live)).await?;
        Box::pin(follow(ctx, job, &stage, &client, &plan, live)).await
    }

    async fn fail(&self, ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
        stage::fail(ctx, job, message).await
    }
}

/// Where the canary of stage `target` routes traffic through (see
/// [`Routing::of`]); `Ok(None)` when it routes none.
pub fn routing(target: &StageTarget) -> Result<Option<Routing>, String> {
    match &target.canary {
        Some(plan) => Routing::of(
            plan,
            &target.app,
            target.service.as_deref(),
            target.ingress.as_deref(),
        ),
        None => Ok(None),
    }
}

/// The metric gates of the stage's verification plan: measured at each
/// canary step.
fn gates_of(target: &StageTarget) -> Vec<MetricGate> {
    target
        .verify
        .as_ref()
        .map(|v| v.gates.clone())
        .unwrap_or_default()
}

/// Whether `have` holds everything `want` says (objects compared key by
/// key, so what Kruise's defaulting adds does not count as a difference).
fn holds(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| holds(hv, v))),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(a, b)| holds(a, b))
        }
        _ => have == want,
    }
}

/// `spec`, resuming the Rollout when `existing` is paused: a pause a line
/// stop left on it (its stage cancelled while stopped, and not rolled
/// back) would hold this canary, which no stop covers now.
fn clearing_pause(mut spec: Value, existing: Option<&RolloutView>) -> Value {
    if existing.is_some_and(|v| v.paused) {
        spec["strategy"]["paused"] = false.into();
    }
    spec
}

/// Writes the stage's Rollout unless it holds the plan already, then waits
/// until Kruise has read it: the steps must be known before the template
/// changes.
async fn put_rollout(
    ctx: &Context,
    stage: &Stage,
    client: &ClusterClient,
    plan: &Canary,
) -> Result<(), Error> {
    let target = &stage.target;
    let (namespace, name) = (target.namespace.as_str(), target.deployment.as_str());
    let routing =
        routing(target).map_err(|m| Error::Fail(format!("stage {}: {m}", stage.position)))?;
    // Gated steps wait for Rollway: it lets a timed one go on itself.
    let held;
    let plan = if gates_of(target).is_empty() {
        plan
    } else {
        held = Canary {
            steps: plan
                .steps
                .iter()
                .map(|s| CanaryStep {
                    pause_seconds: None,
                    ..s.clone()
                })
                .collect(),
            header_match: plan.header_match.clone(),
        };
        &held
    };
    let spec = rollout::spec(name, plan, routing.as_ref());
    let existing = client.rollout(namespace, name).await?;
    if let Some(view) = &existing {
        if !view.managed_by_rollway {
            return Err(Error::Fail(format!(
                "Rollout {namespace}/{name} exists in cluster {} and was not made by Rollway; \
                 remove it or label it app.kubernetes.io/managed-by=rollway to let Rollway drive it",
                target.cluster
            )));
        }
        if view.phase == "Progressing" && !holds(&view.spec, &spec) {
            return Err(Error::Fail(format!(
                "Rollout {namespace}/{name} is in the middle of another rollout ({}); \
                 wait for it or roll it back first",
                view.message
            )));
        }
    }
    let spec = clearing_pause(spec, existing.as_ref());
    let written = match existing {
        Some(view) if holds(&view.spec, &spec) => view,
        other => match client
            .put_rollout(namespace, name, &spec, other.as_ref())
            .await
        {
            Ok(view) => view,
            Err(KubeError::Conflict(m)) => return Err(Error::Retry(m)),
            Err(e) => return Err(e.into()),
        },
    };
    let watch = ctx.kube.rollout_watch(client, namespace);
    let mut changes = watch.changes();
    let until = tokio::time::Instant::now() + OBSERVE_WITHIN;
    loop {
        let seen = watch.get(name).map(|r| RolloutView::of(&r));
        if seen
            .as_ref()
            .is_some_and(|v| v.generation >= written.generation && v.observed())
        {
            return Ok(());
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(ctx.settings.recheck) => {
                if let Some(v) = client.rollout(namespace, name).await?
                    && v.generation >= written.generation
                    && v.observed()
                {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(until) => {
                return Err(Error::Retry(format!(
                    "OpenKruise Rollout did not read Rollout {namespace}/{name} within {} s; \
                     is its controller running in cluster {}?",
                    OBSERVE_WITHIN.as_secs(),
                    target.cluster
                )));
            }
        }
    }
}

/// The stage's status and last paused step, fresh from the database.
async fn stage_now(ctx: &Context, stage: &Stage) -> Result<(StageStatus, Option<u32>), Error> {
    let target = work_orders::stage_target(&ctx.db.pool, stage.order_id, stage.position).await?;
    Ok((target.status, target.paused_step))
}

async fn follow(
    ctx: &Context,
    job: &Job,
    stage: &Stage,
    client: &ClusterClient,
    plan: &Canary,
    mut live: Deployment,
) -> Result<Done, Error> {
    let target = &stage.target;
    let (namespace, name) = (target.namespace.as_str(), target.deployment.as_str());
    let uid = live.metadata.uid.clone();
    let deployments = ctx.kube.watch(client, namespace);
    let rollouts = ctx.kube.rollout_watch(client, namespace);
    let mut deployment_changes = deployments.changes();
    let mut rollout_changes = rollouts.changes();
    let steps = plan.step_count();
    let budget = Duration::from_millis(stage.deadline_ms(&live).max(0) as u64);
    // Progress between pauses is timed; a pause waits as long as it takes.
    let mut moving_since = tokio::time::Instant::now();
    let mut last_step = (0, String::new());
    let mut reported_verifying = target.status == StageStatus::Verifying;
    let gates = gates_of(target);
    let mut values: Option<Values> = None;
    loop {
        // When a gated timed pause is over and Rollway lets it go on.
        let mut pause_end: Option<tokio::time::Instant> = None;
        // What this pass reads of the watches: a change after it wakes the
        // next pass.
        let seen = own_versions(&deployments, &rollouts, name);
        let (status, paused_step) = stage_now(ctx, stage).await?;
        if !matches!(
            status,
            StageStatus::Deploying | StageStatus::Verifying | StageStatus::Paused
        ) {
            return Ok(Done::Moot(format!("stage is {status}; nothing to do")));
        }
        if let Some(seen) = deployments.get(name) {
            if let Some(message) = deployment::replaced(uid.as_deref(), &seen) {
                return failed(
                    ctx,
                    job,
                    stage,
                    None,
                    format!("{}: {message}", stage.name()),
                )
                .await;
            }
            if seen.metadata.generation >= live.metadata.generation {
                live = (*seen).clone();
            }
        }
        if deployment::container_image(&live, &target.container) != Some(target.image.as_str()) {
            let message = format!(
                "{} was changed by someone else during the canary ({})",
                stage.name(),
                stage.container_now(&live)
            );
            return failed(ctx, job, stage, Some(&live), message).await;
        }
        let view = match rollouts.get(name) {
            Some(r) => RolloutView::of(&r),
            None => match client.rollout(namespace, name).await? {
                Some(v) => v,
                None => {
                    let message =
                        format!("Rollout {namespace}/{name} was deleted during the canary");
                    return failed(ctx, job, stage, Some(&live), message).await;
                }
            },
        };
        if (view.step, view.step_state.clone()) != last_step {
            last_step = (view.step, view.step_state.clone());
            moving_since = tokio::time::Instant::now();
        }
        let kruise_let_go = live.spec.paused != Some(true)
            && !live
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("rollouts.kruise.io/in-progressing"));
        // A pause the Rollout left without Rollway (its time ran out, it was
        // approved in the cluster, or it went on while no server followed
        // it): the stage goes on first, whatever comes next.
        if let (StageStatus::Paused, Some(p)) = (status, paused_step)
            && !view.paused_at(p)
        {
            let message = if gates.is_empty() {
                format!("step {p} went on without an approval through Rollway (its pause ended)")
            } else {
                format!("step {p} went on: its gates passed and its pause ended")
            };
            let reported = stage
                .report(
                    ctx,
                    job,
                    Outcome::Resumed { step: p },
                    message,
                    StageRecord::default(),
                )
                .await?;
            if let Done::Moot(note) = reported {
                return Ok(Done::Moot(note));
            }
            continue;
        }
        let mut paused_now = false;
        if kruise_let_go && view.phase != "Progressing" {
            // The steps are over and the Deployment rolls on its own.
            match deployment::evaluate(&live) {
                Progress::Complete => {
                    let new_revision = deployment::revision(&live.metadata);
                    let message = format!(
                        "{} runs {}{} after {steps} canary step{}",
                        stage.name(),
                        target.image,
                        new_revision
                            .as_deref()
                            .map(|r| format!(" (revision {r})"))
                            .unwrap_or_default(),
                        if steps == 1 { "" } else { "s" }
                    );
                    let record = StageRecord {
                        new_revision,
                        ..StageRecord::default()
                    };
                    return stage
                        .report(ctx, job, Outcome::Succeeded, message, record)
                        .await;
                }
                Progress::Failed(message) => {
                    return failed(ctx, job, stage, Some(&live), message).await;
                }
                Progress::Verifying(message) | Progress::Waiting(message) => {
                    if !reported_verifying && status == StageStatus::Deploying {
                        reported_verifying = true;
                        let note = format!("every canary step done; {message}");
                        if let Done::Moot(note) = stage
                            .report(ctx, job, Outcome::Verifying, note, StageRecord::default())
                            .await?
                        {
                            return Ok(Done::Moot(note));
                        }
                    }
                }
            }
        } else if view.paused_at(view.step) && view.step >= 1 {
            let step = view.step;
            paused_now = true;
            match (status, paused_step) {
                // Waiting for an owner, or for its time (Rollway's own
                // when the step is gated).
                (StageStatus::Paused, Some(p)) if p == step => {
                    if let (false, Some(seconds)) = (gates.is_empty(), plan.pause_of(step))
                        && let Some(at) =
                            verify::passed_at(ctx, stage, &gates, i64::from(step)).await?
                    {
                        let left = at + i64::from(seconds) * 1000 - now_ms();
                        if left <= 0 {
                            match client.approve_step(namespace, &view).await {
                                Ok(_) | Err(KubeError::Conflict(_)) => {}
                                Err(e) => return Err(e.into()),
                            }
                        } else {
                            pause_end = Some(
                                tokio::time::Instant::now() + Duration::from_millis(left as u64),
                            );
                        }
                    }
                }
                // Approved in Rollway; the request's patch did not land.
                (StageStatus::Deploying, Some(p)) if p == step => {
                    match client.approve_step(namespace, &view).await {
                        Ok(_) | Err(KubeError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => {
                    let pods = live.spec.replicas.unwrap_or(1);
                    let what = plan.describe_step(step);
                    let mut wait = match plan.pause_of(step) {
                        Some(seconds) => format!("; it goes on by itself after {seconds} s"),
                        None => "; an owner approves the next step".to_string(),
                    };
                    if !gates.is_empty() {
                        let values = match &values {
                            Some(v) => v.clone(),
                            None => {
                                let v = verify::values(
                                    &stage.workload(),
                                    stage.target.replaced_revision.as_deref(),
                                    client,
                                    &live,
                                )
                                .await?;
                                values = Some(v.clone());
                                v
                            }
                        };
                        let judged = verify::gates(
                            ctx,
                            job,
                            &verify::checked(stage),
                            &gates,
                            &values,
                            i64::from(step),
                            now_ms(),
                        )
                        .await?;
                        wait = match judged {
                            GatesEnd::Passed(lines) => {
                                format!("; gates passed: {}{wait}", lines.join(", "))
                            }
                            GatesEnd::Failed(why) => {
                                let message = format!("step {step} of {steps} ({what}): {why}");
                                return failed(ctx, job, stage, Some(&live), message).await;
                            }
                            GatesEnd::Inconclusive(why) => format!(
                                "; {why}; an owner approves the step or rolls the stage back"
                            ),
                        };
                    }
                    let message = format!(
                        "paused at step {step} of {steps}: {what}, {} of {pods} pod{} on the new version{wait}",
                        view.canary_ready_replicas,
                        if pods == 1 { "" } else { "s" }
                    );
                    let reported = stage
                        .report(
                            ctx,
                            job,
                            Outcome::Paused { step },
                            message,
                            StageRecord::default(),
                        )
                        .await?;
                    if let Done::Moot(note) = reported {
                        return Ok(Done::Moot(note));
                    }
                }
            }
        }
        let deadline =
            (!paused_now && status != StageStatus::Paused).then(|| moving_since + budget);
        if let Some(at) = deadline
            && tokio::time::Instant::now() >= at
        {
            let message = format!(
                "the canary of {} made no progress for {} s (step {} of {steps}: {})",
                stage.name(),
                budget.as_secs(),
                view.step,
                if view.message.is_empty() {
                    view.step_state.as_str()
                } else {
                    view.message.as_str()
                }
            );
            return failed(ctx, job, stage, Some(&live), message).await;
        }
        let wake = match (deadline, pause_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let passed = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(passed);
        let recheck = tokio::time::sleep(ctx.settings.recheck);
        tokio::pin!(recheck);
        // Wait for what concerns this stage: its own Deployment or Rollout
        // changing (every other object of the namespace wakes the watches
        // too, and is not worth a look at the database), a deadline, or
        // the periodic re-check (which also catches an approval whose
        // status patch did not land).
        loop {
            tokio::select! {
                changed = deployment_changes.changed() => {
                    if changed.is_err() { tokio::time::sleep(ctx.settings.recheck).await; break; }
                }
                changed = rollout_changes.changed() => {
                    if changed.is_err() { tokio::time::sleep(ctx.settings.recheck).await; break; }
                }
                _ = &mut passed => break,
                _ = &mut recheck => {
                    match client.deployment(namespace, name).await {
                        Ok(Some(d)) if d.metadata.generation >= live.metadata.generation => live = d,
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            let message = format!("Deployment {} was deleted during the canary", stage.name());
                            return failed(ctx, job, stage, None, message).await;
                        }
                        Err(e) => tracing::info!(error = %e, "cannot read the Deployment; still waiting"),
                    }
                    break;
                }
            }
            if own_versions(&deployments, &rollouts, name) != seen {
                break;
            }
        }
    }
}

/// The resourceVersions of Deployment and Rollout `name` in the held
/// watches (`None` for one not seen).
fn own_versions(
    deployments: &DeploymentWatch,
    rollouts: &NamespaceWatch<DynamicObject>,
    name: &str,
) -> (Option<String>, Option<String>) {
    (
        deployments
            .get(name)
            .and_then(|d| d.metadata.resource_version.clone()),
        rollouts
            .get(name)
            .and_then(|r| r.metadata.resource_version.clone()),
    )
}

/// Fails the stage with `message` (its rollback's deadline from `live`).
async fn failed(
    ctx: &Context,
    job: &Job,
    stage: &Stage,
    live: Option<&Deployment>,
    message: String,
) -> Result<Done, Error> {
    let record = StageRecord {
        new_revision: live.and_then(|d| deployment::revision(&d.metadata)),
        deadline_ms: live.map(|d| stage.deadline_ms(d)),
        ..StageRecord::default()
    };
    stage
        .report(ctx, job, Outcome::Failed, message, record)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rollout_holds_a_plan_whatever_kruise_added() {
        let want = json!({"strategy": {"canary": {"steps": [{"replicas": 1, "pause": {}}]}}});
        let have = json!({"strategy": {"canary": {"steps": [{"replicas": 1, "pause": {}}],
                          "enableExtraWorkloadForCanary": false}}, "disabled": false});
        assert!(holds(&have, &want));
        let other = json!({"strategy": {"canary": {"steps": [{"replicas": 2, "pause": {}}]}}});
        assert!(!holds(&other, &want));
        let longer = json!({"strategy": {"canary": {"steps": [{"replicas": 1, "pause": {}}, {}]}}});
        assert!(!holds(&longer, &want));
    }

    #[test]
    fn a_pause_left_on_the_rollout_is_cleared_by_the_next_canary() {
        let want = json!({"strategy": {"canary": {"steps": [{"replicas": 1, "pause": {}}]}}});
        let view = |paused: bool| {
            let object: kube::api::DynamicObject = serde_json::from_value(json!({
                "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
                "metadata": {"name": "web"},
                "spec": {"strategy": {"paused": paused, "canary": want["strategy"]["canary"]}},
            }))
            .unwrap();
            RolloutView::of(&object)
        };
        assert_eq!(clearing_pause(want.clone(), None), want);
        assert_eq!(clearing_pause(want.clone(), Some(&view(false))), want);
        let cleared = clearing_pause(want.clone(), Some(&view(true)));
        assert_eq!(cleared["strategy"]["paused"], false);
        assert!(!holds(&view(true).spec, &cleared), "so it is written");
        assert!(holds(&view(false).spec, &cleared));
    }
}
