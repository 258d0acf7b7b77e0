//! The verification of a stage, once its rollout is available: the plan
//! filed with the order (`domain::verify`) run to its end. Smoke checks
//! first (each tried up to its attempts; one that never answers as
//! expected fails the stage), then every metric gate measured on its own
//! interval from the cluster's Prometheus, then the rest of the soak time,
//! then an owner's sign-off. A gate past its failure limit fails the stage
//! (and the automatic rollback follows, as for a progress deadline); a
//! gate past its inconclusive limit (no data, Prometheus down or
//! refusing) pauses the stage for a person, never a silent pass.
//!
//! Every measurement and attempt is a row written once (`db::verify`)
//! before it counts, so a job resumed after a restart reads what was
//! measured, takes the next measurement when it is due and never counts
//! one twice.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;

use super::stage::{Stage, Workload};
use super::{Context, Done, Error, Kind};
use crate::db::clusters;
use crate::db::jobs::Job;
use crate::db::now_ms;
use crate::db::verify::{self as results, Check, NewResult, Of, verdict_of};
use crate::db::work_order_views::VerifyResult;
use crate::db::work_orders::{StageRecord, stage_target};
use crate::domain::text::duration;
use crate::domain::verify::{MetricGate, SmokeCheck, Standing, Values, Verdict, fill, number};
use crate::domain::work_order::{JobKind, Outcome, StageStatus};
use crate::kube::deployment;

/// Pause between two attempts of a smoke check.
const SMOKE_RETRY: Duration = Duration::from_secs(2);

/// Runs a stage's verification plan.
pub(super) struct Verify;

impl Kind for Verify {
    const NAME: &'static str = JobKind::Verify.as_str();

    async fn run(&self, ctx: &Context, job: &Job) -> Result<Done, Error> {
        let stage = Stage::load(ctx, job).await?;
        let target = &stage.target;
        if target.status != StageStatus::Verifying || target.verify_started_at.is_none() {
            return Ok(stage.nothing_to_do());
        }
        let plan = target.verify.clone().unwrap_or_default();
        let started = target.verify_started_at.unwrap_or_else(now_ms);
        let client = stage.client(ctx).await?;
        let live = stage.read(&client).await?;
        stage.check_same_object(&live)?;
        let values = values(
            &stage.workload(),
            target.replaced_revision.as_deref(),
            &client,
            &live,
        )
        .await?;
        let checked = checked(&stage);
        // A failure's automatic rollback gets the Deployment's own deadline.
        let failed = |message: String| {
            let record = StageRecord {
                deadline_ms: Some(stage.deadline_ms(&live)),
                ..StageRecord::default()
            };
            stage.report(ctx, job, Outcome::Failed, message, record)
        };
        let mut said = Vec::new();
        for (i, check) in plan.smoke.iter().enumerate() {
            match smoke(ctx, job, &checked, &values, i, check).await? {
                Ok(line) => said.push(line),
                Err(message) => return failed(message).await,
            }
        }
        // A canary's gates ran at each of its steps.
        let gates_here = if target.strategy == "canary" {
            &[][..]
        } else {
            &plan.gates[..]
        };
        match gates(ctx, job, &checked, gates_here, &values, 0, started).await? {
            GatesEnd::Passed(lines) => said.extend(lines),
            GatesEnd::Failed(message) => return failed(message).await,
            GatesEnd::Inconclusive(message) => {
                return stage
                    .report(
                        ctx,
                        job,
                        Outcome::Inconclusive,
                        format!(
                            "{message}; an owner lets the verification go on or rolls the stage back"
                        ),
                        StageRecord::default(),
                    )
                    .await;
            }
        }
        if let Some(soak) = plan.soak_seconds.filter(|s| *s > 0) {
            sleep_until(started + i64::from(soak) * 1000).await;
            said.push(format!("soaked {}", duration(i64::from(soak) * 1000)));
        }
        if plan.sign_off {
            loop {
                let now = stage_target(&ctx.db.pool, stage.order_id, stage.position).await?;
                if now.status != StageStatus::Verifying {
                    return Ok(Done::Moot(format!(
                        "stage is {}; it no longer waits for a sign-off",
                        now.status
                    )));
                }
                if now.signed_off_at.is_some() {
                    said.push("signed off by an owner".into());
                    break;
                }
                tokio::time::sleep(ctx.settings.poll).await;
            }
        }
        let message = if said.is_empty() {
            format!("{} verified", stage.name())
        } else {
            format!("{} verified: {}", stage.name(), said.join("; "))
        };
        stage
            .report(ctx, job, Outcome::Verified, message, StageRecord::default())
            .await
    }

    async fn fail(&self, ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
        super::stage::fail(ctx, job, message).await
    }
}

/// What a verification checks: whose results they are, and the cluster
/// whose Prometheus measures its gates.
pub(super) struct Checked<'a> {
    /// A stage's results are at canary step 0 (after the rollout) here;
    /// [`gates`] picks the step.
    pub of: Of,
    pub cluster_id: i64,
    pub cluster: &'a str,
    /// When a person last let it go on past an inconclusive gate.
    pub continued_at: Option<i64>,
}

/// What a stage's verification checks.
pub(super) fn checked(stage: &Stage) -> Checked<'_> {
    Checked {
        of: Of::Stage {
            order_id: stage.order_id,
            position: stage.position,
            step: 0,
        },
        cluster_id: stage.target.cluster_id,
        cluster: &stage.target.cluster,
        continued_at: stage.target.verify_continued_at,
    }
}

/// What a template may use for a workload: its namespace, Deployment,
/// container, and the pod-template hashes of the new pods (the ReplicaSet
/// of the Deployment's revision) and the old ones (the revision the deploy
/// replaced, `replaced_revision`).
pub(super) async fn values(
    workload: &Workload<'_>,
    replaced_revision: Option<&str>,
    client: &crate::kube::ClusterClient,
    live: &Deployment,
) -> Result<Values, Error> {
    let sets = client.replica_sets_of(live).await?;
    let hash_of = |revision: Option<&str>| {
        revision
            .and_then(|rev| {
                sets.iter()
                    .find(|rs| deployment::revision(&rs.metadata).as_deref() == Some(rev))
            })
            .and_then(|rs| {
                rs.metadata
                    .labels
                    .as_ref()?
                    .get("pod-template-hash")
                    .cloned()
            })
            .unwrap_or_default()
    };
    Ok(Values {
        namespace: workload.namespace.to_string(),
        deployment: workload.deployment.to_string(),
        container: workload.container.to_string(),
        new_hash: hash_of(deployment::revision(&live.metadata).as_deref()),
        old_hash: hash_of(replaced_revision),
    })
}

/// Runs smoke check `index`: the line the stage's message keeps when it
/// answered as expected, or why the stage fails.
pub(super) async fn smoke(
    ctx: &Context,
    job: &Job,
    checked: &Checked<'_>,
    values: &Values,
    index: usize,
    check: &SmokeCheck,
) -> Result<Result<String, String>, Error> {
    let check_id = Check::Smoke(index);
    let url = fill(check.url.trim(), values)
        .map_err(|m| Error::Fail(format!("smoke check {}: {m}", index + 1)))?;
    let mut past: Vec<VerifyResult> = results::results(&ctx.db.pool, checked.of)
        .await?
        .into_iter()
        .filter(|r| check_id.owns(r))
        .collect();
    loop {
        if let Some(pass) = past.iter().find(|r| verdict_of(r) == Verdict::Pass) {
            return Ok(Ok(format!("{url} answered {}", pass.detail)));
        }
        if past.len() as u32 >= check.attempts {
            let last = past.last().map(|r| r.detail.as_str()).unwrap_or("");
            return Ok(Err(format!(
                "smoke check {} failed: GET {url} did not answer {} in {} attempt{} (last: {last})",
                index + 1,
                check.expect_status,
                check.attempts,
                if check.attempts == 1 { "" } else { "s" }
            )));
        }
        if !past.is_empty() {
            tokio::time::sleep(SMOKE_RETRY).await;
        }
        let attempt = ctx
            .smoke
            .get(&url, Duration::from_secs(u64::from(check.timeout_seconds)))
            .await;
        let verdict = if attempt.status == Some(check.expect_status) {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let detail = match (attempt.status, &attempt.error) {
            (Some(status), _) => format!("{status} in {} ms", attempt.millis),
            (None, Some(error)) => format!("{error} after {} ms", attempt.millis),
            (None, None) => format!("no status after {} ms", attempt.millis),
        };
        let result = NewResult {
            of: checked.of,
            check: check_id,
            seq: past.len() as i64 + 1,
            at: now_ms(),
            verdict,
            value: attempt.status.map(f64::from),
            detail: &detail,
            asked: &url,
        };
        results::record(&ctx.db, &job.lease, &result).await?;
        past.push(VerifyResult {
            position: 0,
            step: 0,
            check_kind: "smoke".into(),
            check_index: index as i64,
            seq: result.seq,
            at: result.at,
            verdict: match verdict {
                Verdict::Pass => "pass".into(),
                _ => "fail".into(),
            },
            value: result.value,
            detail,
            asked: url.clone(),
        });
    }
}

/// How the gates ended.
pub(super) enum GatesEnd {
    /// Every gate passed: a line each for the stage's message.
    Passed(Vec<String>),
    Failed(String),
    /// A gate could not be judged past its limit: which, and why.
    Inconclusive(String),
}

/// Measures each of `gates` on its own interval (the first measurement
/// one interval after `started`) until each has passed, one has failed or
/// one cannot be judged; `step` is the canary step they judge (0 after
/// the rollout).
pub(super) async fn gates(
    ctx: &Context,
    job: &Job,
    checked: &Checked<'_>,
    gates: &[MetricGate],
    values: &Values,
    step: i64,
    started: i64,
) -> Result<GatesEnd, Error> {
    if gates.is_empty() {
        return Ok(GatesEnd::Passed(Vec::new()));
    }
    let access = clusters::prometheus_access(&ctx.db.pool, &ctx.sealer, checked.cluster_id).await;
    let continued_at = checked.continued_at.unwrap_or(i64::MIN);
    let of = checked.of.at_step(step);
    loop {
        let past = results::results(&ctx.db.pool, of).await?;
        let mut next: Option<(i64, usize)> = None;
        let mut lines = Vec::new();
        for (i, gate) in gates.iter().enumerate() {
            let mine: Vec<&VerifyResult> = past.iter().filter(|r| Check::Gate(i).owns(r)).collect();
            let verdicts: Vec<Verdict> = mine.iter().map(|r| verdict_of(r)).collect();
            let forgiven = mine
                .iter()
                .filter(|r| verdict_of(r) == Verdict::Inconclusive && r.at <= continued_at)
                .count() as u32;
            match gate.standing(&verdicts, forgiven) {
                Standing::Failed => return Ok(GatesEnd::Failed(failure(i, gate, &mine))),
                Standing::Inconclusive => {
                    return Ok(GatesEnd::Inconclusive(undecided(i, gate, &mine, forgiven)));
                }
                Standing::Passed => lines.push(passed(gate, &verdicts)),
                Standing::Measuring => {
                    let due = mine.last().map(|r| r.at).unwrap_or(started)
                        + i64::from(gate.interval_seconds) * 1000;
                    if next.is_none_or(|(at, _)| due < at) {
                        next = Some((due, i));
                    }
                }
            }
        }
        let Some((due, i)) = next else {
            return Ok(GatesEnd::Passed(lines));
        };
        sleep_until(due).await;
        let gate = &gates[i];
        let seq = past.iter().filter(|r| Check::Gate(i).owns(r)).count() as i64 + 1;
        let query = fill(&gate.query, values);
        let asked = query.as_deref().unwrap_or_default();
        let (verdict, value, detail) = match (&access, &query) {
            (_, Err(m)) => (Verdict::Inconclusive, None, m.clone()),
            (Ok(Some(access)), Ok(query)) => measure(ctx, access, gate, query).await,
            (Ok(None), _) => (
                Verdict::Inconclusive,
                None,
                format!("cluster {} has no Prometheus", checked.cluster),
            ),
            (Err(e), _) => (Verdict::Inconclusive, None, e.to_string()),
        };
        let result = NewResult {
            of,
            check: Check::Gate(i),
            seq,
            at: now_ms(),
            verdict,
            value,
            detail: &detail,
            asked,
        };
        results::record(&ctx.db, &job.lease, &result).await?;
    }
}

/// When the last of `gates` passed at canary `step`, or `None` while one
/// has not (it is measuring, or stopped on something a person decides).
pub(super) async fn passed_at(
    ctx: &Context,
    stage: &Stage,
    gates: &[MetricGate],
    step: i64,
) -> Result<Option<i64>, Error> {
    let past = results::results(&ctx.db.pool, checked(stage).of.at_step(step)).await?;
    let mut last = None;
    for (i, gate) in gates.iter().enumerate() {
        let mine: Vec<&VerifyResult> = past.iter().filter(|r| Check::Gate(i).owns(r)).collect();
        let verdicts: Vec<Verdict> = mine.iter().map(|r| verdict_of(r)).collect();
        if gate.standing(&verdicts, 0) != Standing::Passed {
            return Ok(None);
        }
        last = last.max(mine.last().map(|r| r.at));
    }
    Ok(last)
}

/// One measurement of `gate` by `query` (its query filled in): its
/// verdict, the worst sample and what came back in words.
async fn measure(
    ctx: &Context,
    access: &crate::domain::cluster::PrometheusAccess,
    gate: &MetricGate,
    query: &str,
) -> (Verdict, Option<f64>, String) {
    match ctx.prometheus.query(access, query).await {
        Err(e) => (Verdict::Inconclusive, None, e.to_string()),
        Ok(samples) => {
            let numbers: Vec<f64> = samples.iter().map(|s| s.value).collect();
            let verdict = gate.judge(&numbers);
            let worst = gate.worst(&numbers);
            let series = match numbers.len() {
                1 => String::new(),
                n => format!(" (worst of {n} series)"),
            };
            let detail = match (verdict, worst) {
                (_, None) if numbers.is_empty() => "no data: the query returned no series".into(),
                (Verdict::Inconclusive, _) => "the query returned NaN".into(),
                (Verdict::Pass, Some(w)) => format!(
                    "{} {} {}{series}",
                    number(w),
                    gate.op.as_str(),
                    number(gate.threshold)
                ),
                (_, Some(w)) => format!(
                    "{} is not {} {}{series}",
                    number(w),
                    gate.op.as_str(),
                    number(gate.threshold)
                ),
                (_, None) => "no number came back".into(),
            };
            (verdict, worst, detail)
        }
    }
}

fn count_of(mine: &[&VerifyResult], verdict: Verdict) -> usize {
    mine.iter().filter(|r| verdict_of(r) == verdict).count()
}

/// Why gate `i` failed the stage.
fn failure(i: usize, gate: &MetricGate, mine: &[&VerifyResult]) -> String {
    let last = mine
        .iter()
        .rev()
        .find(|r| verdict_of(r) == Verdict::Fail)
        .map(|r| r.detail.as_str())
        .unwrap_or("");
    format!(
        "gate {} ({}) failed: {} of {} measurements failed, more than its limit of {} (last: {last})",
        i + 1,
        gate.name,
        count_of(mine, Verdict::Fail),
        mine.len(),
        gate.failure_limit
    )
}

/// Why gate `i` cannot be judged; who decides is the caller's to say.
fn undecided(i: usize, gate: &MetricGate, mine: &[&VerifyResult], forgiven: u32) -> String {
    let last = mine
        .iter()
        .rev()
        .find(|r| verdict_of(r) == Verdict::Inconclusive)
        .map(|r| r.detail.as_str())
        .unwrap_or("");
    format!(
        "gate {} ({}) could not be judged {} times, more than its limit of {} (last: {last})",
        i + 1,
        gate.name,
        count_of(mine, Verdict::Inconclusive) - forgiven as usize,
        gate.inconclusive_limit
    )
}

/// A passed gate in a line.
fn passed(gate: &MetricGate, verdicts: &[Verdict]) -> String {
    let passes = verdicts.iter().filter(|v| **v == Verdict::Pass).count();
    format!(
        "{} {} {} in {passes} of {} measurements",
        gate.name,
        gate.op.as_str(),
        number(gate.threshold),
        verdicts.len()
    )
}

/// Sleeps until `at` (Unix ms); at once when it has passed.
pub(super) async fn sleep_until(at: i64) {
    let wait = at - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}
