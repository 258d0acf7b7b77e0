//! What the stage-run kinds share: the stage as `db::work_orders::
//! stage_target` reads it, its cluster's client (credentials from `db`,
//! then the driver), writing until the live Deployment is what the job
//! wants, following the rollout on the namespace's shared watch, and
//! reporting through the state machine fenced on the job's lease.

use std::future::Future;

use k8s_openapi::api::apps::v1::Deployment;

use super::{Context, Done, Error};
use crate::db::audit::AuditActor;
use crate::db::jobs::Job;
use crate::db::now_ms;
use crate::db::work_orders::{self, Source, StageRecord, StageTarget};
use crate::db::{clusters, error as db_error};
use crate::domain::work_order::{Command, Outcome, Refusal, RefusalKind, Refused};
use crate::kube::deployment::{self, Progress};
use crate::kube::{ClusterClient, KubeError};

/// The stage run a job drives, read fresh at each claim.
pub(super) struct Stage {
    pub order_id: i64,
    pub position: i64,
    pub target: StageTarget,
}

/// How following a rollout ended.
pub(super) enum Followed {
    Complete(Deployment),
    Failed(Option<Deployment>, String),
    /// The stage moved on meanwhile; the note says how.
    Moot(String),
}

impl Stage {
    /// The job's stage run; a job of another subject cannot drive one.
    pub async fn load(ctx: &Context, job: &Job) -> Result<Stage, Error> {
        let Some((order_id, position)) = job.subject.stage() else {
            return Err(Error::Fail(format!(
                "a {} job works on a stage run, not on a {}",
                job.kind,
                job.subject.kind()
            )));
        };
        let target = work_orders::stage_target(&ctx.db.pool, order_id, position).await?;
        Ok(Stage {
            order_id,
            position,
            target,
        })
    }

    /// `namespace/deployment`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.target.namespace, self.target.deployment)
    }

    /// The job's work no longer applies to the stage as it stands.
    pub fn nothing_to_do(&self) -> Done {
        Done::Moot(format!("stage is {}; nothing to do", self.target.status))
    }

    /// The client of the stage's cluster.
    pub async fn client(&self, ctx: &Context) -> Result<ClusterClient, Error> {
        let credentials =
            clusters::credentials(&ctx.db.pool, &ctx.sealer, self.target.cluster_id).await?;
        Ok(ctx.kube.client(&credentials).await?)
    }

    /// The stage's Deployment; fails the job when it is gone.
    pub async fn read(&self, client: &ClusterClient) -> Result<Deployment, Error> {
        client
            .deployment(&self.target.namespace, &self.target.deployment)
            .await?
            .ok_or_else(|| {
                Error::Fail(format!(
                    "Deployment {} does not exist in cluster {}",
                    self.name(),
                    self.target.cluster
                ))
            })
    }

    /// Writes with `write` until `done` holds for the live Deployment. A
    /// 409 reads it again (five times at most); a transient failure retries
    /// the job later; any other failure, or a reason from `refuse`, fails
    /// it. The Deployment as written.
    pub async fn write_until<Fut>(
        &self,
        client: &ClusterClient,
        mut live: Deployment,
        done: impl Fn(&Deployment) -> bool,
        refuse: impl Fn(&Deployment) -> Option<String>,
        write: impl Fn(Deployment) -> Fut,
    ) -> Result<Deployment, Error>
    where
        Fut: Future<Output = Result<Deployment, KubeError>>,
    {
        let mut conflicts = 0;
        while !done(&live) {
            if let Some(reason) = refuse(&live) {
                return Err(Error::Fail(reason));
            }
            match write(live.clone()).await {
                Ok(written) => live = written,
                Err(KubeError::Conflict(m)) if conflicts < 5 => {
                    conflicts += 1;
                    tracing::debug!(error = %m, "conflict; reading again");
                    live = self.read(client).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(live)
    }

    /// Follows the Deployment until its rollout completes or fails. `ours`
    /// tells whether the live template is still the one this job wrote;
    /// with `report_verifying`, the stage is reported `verifying` once all
    /// new pods are updated.
    pub async fn follow(
        &self,
        ctx: &Context,
        job: &Job,
        client: &ClusterClient,
        mut live: Deployment,
        mut report_verifying: bool,
        ours: impl Fn(&Deployment) -> bool,
    ) -> Result<Followed, Error> {
        let target = &self.target;
        let watch = ctx.kube.watch(client, &target.namespace);
        let mut changes = watch.changes();
        let mut unreachable_since: Option<i64> = None;
        let recheck = ctx.settings.recheck;
        loop {
            if let Some(seen) = watch.get(&target.deployment)
                && newer(&seen, &live)
            {
                live = (*seen).clone();
            }
            if !ours(&live) {
                return Ok(Followed::Failed(
                    Some(live.clone()),
                    format!(
                        "{} was changed by someone else during the rollout (it now runs {})",
                        self.name(),
                        deployment::container_image(&live, &target.container).unwrap_or("?")
                    ),
                ));
            }
            match deployment::evaluate(&live) {
                Progress::Complete => return Ok(Followed::Complete(live)),
                Progress::Failed(message) => return Ok(Followed::Failed(Some(live), message)),
                Progress::Verifying(message) if report_verifying => {
                    report_verifying = false;
                    let reported = self
                        .report(
                            ctx,
                            job,
                            Outcome::Verifying,
                            message,
                            StageRecord::default(),
                        )
                        .await?;
                    if let Done::Moot(note) = reported {
                        return Ok(Followed::Moot(note));
                    }
                }
                _ => {}
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(recheck).await;
                    }
                }
                _ = tokio::time::sleep(recheck) => {
                    match client.deployment(&target.namespace, &target.deployment).await {
                        Ok(Some(d)) => {
                            unreachable_since = None;
                            if !newer(&live, &d) {
                                live = d;
                            }
                        }
                        Ok(None) => {
                            return Ok(Followed::Failed(None, format!("Deployment {} was deleted during the rollout", self.name())));
                        }
                        Err(e) => {
                            let since = *unreachable_since.get_or_insert_with(now_ms);
                            tracing::info!(error = %e, "cannot read the Deployment; still waiting");
                            if now_ms() - since > 15 * 60 * 1000 {
                                return Err(Error::Retry(e.message().to_string()));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Records the job's finding through the state machine, fenced on its
    /// lease. A finding the state machine no longer takes (the stage moved
    /// on) is [`Done::Moot`].
    pub async fn report(
        &self,
        ctx: &Context,
        job: &Job,
        outcome: Outcome,
        message: String,
        record: StageRecord,
    ) -> Result<Done, Error> {
        report(
            ctx,
            job,
            self.order_id,
            self.position,
            outcome,
            message,
            record,
        )
        .await
    }
}

async fn report(
    ctx: &Context,
    job: &Job,
    order_id: i64,
    position: i64,
    outcome: Outcome,
    message: String,
    record: StageRecord,
) -> Result<Done, Error> {
    let failed = outcome == Outcome::Failed;
    let command = Command::Report {
        stage: position as u32,
        outcome,
        message,
    };
    let applied = work_orders::apply(
        &ctx.db,
        order_id,
        &command,
        Source::Engine { job: &job.lease },
        &record,
        &AuditActor::engine(),
    )
    .await;
    match applied {
        Ok(_) => {
            if failed {
                // An automatic rollback may have been queued.
                ctx.wake();
            }
            Ok(Done::Recorded)
        }
        // The order moved on (closed, or the stage was rolled back by a
        // person): the report no longer applies.
        Err(
            db_error::Error::Conflict(reason)
            | db_error::Error::Refused(Refused {
                refusal:
                    Refusal {
                        kind: RefusalKind::Conflict,
                        reason,
                    },
                ..
            }),
        ) => {
            tracing::info!(%reason, "report no longer applies");
            Ok(Done::Moot(reason))
        }
        Err(e) => Err(e.into()),
    }
}

/// Fails the job's stage run with `message` (what a stage kind records
/// when its work fails for good).
pub(super) async fn fail(ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
    match job.subject.stage() {
        Some((order_id, position)) => {
            report(
                ctx,
                job,
                order_id,
                position,
                Outcome::Failed,
                message,
                StageRecord::default(),
            )
            .await
        }
        None => Ok(Done::Moot(message)),
    }
}

/// Whether `a` is a later version of the object than `b`.
fn newer(a: &Deployment, b: &Deployment) -> bool {
    let version = |d: &Deployment| {
        d.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (version(a), version(b)) {
        (Some(a), Some(b)) => a > b,
        _ => a.metadata.resource_version != b.metadata.resource_version,
    }
}
