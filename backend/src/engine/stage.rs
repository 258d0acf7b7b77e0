//! What the stage-run kinds share: the stage as `db::work_orders::
//! stage_target` reads it, its cluster's client (credentials from `db`,
//! then the driver), writing until the live Deployment is what the job
//! wants, following the rollout on the namespace's shared watch until it
//! completes, fails or passes the stage's overall deadline, and reporting
//! through the state machine fenced on the job's lease.
//!
//! One object: the Deployment a stage drives is the one of the uid its
//! deploy recorded. A Deployment of another uid under the same name is a
//! different object (deleted and created again) and fails the stage;
//! versions of one object are ordered by `metadata.generation`, never by
//! comparing resourceVersions (opaque strings).

use std::future::Future;

use k8s_openapi::api::apps::v1::Deployment;

use super::{Context, Done, Error};
use crate::db::audit::AuditActor;
use crate::db::deployments::DeployTarget;
use crate::db::error as db_error;
use crate::db::jobs::Job;
use crate::db::now_ms;
use crate::db::work_orders::{self, Replaced, Source, StageRecord, StageTarget};
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

/// How writing ended: the Deployment as written, or the reason the job's
/// `refuse` gave for not writing.
pub(super) enum Written {
    Done(Box<Deployment>),
    Refused(String),
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

    /// The Deployment the stage drives, as the shared rollout code sees it.
    pub fn workload(&self) -> Workload<'_> {
        Workload {
            cluster: &self.target.cluster,
            namespace: &self.target.namespace,
            deployment: &self.target.deployment,
            container: &self.target.container,
            uid: self.target.deployment_uid.as_deref(),
            deadline_at: self.target.deadline_at,
            deadline_of: "the stage's",
        }
    }

    /// `namespace/deployment`.
    pub fn name(&self) -> String {
        self.workload().name()
    }

    /// The job's work no longer applies to the stage as it stands.
    pub fn nothing_to_do(&self) -> Done {
        Done::Moot(format!("stage is {}; nothing to do", self.target.status))
    }

    /// Fails the job when the stage's overall deadline has passed (the
    /// job kept failing to reach the cluster, or the server was down).
    pub fn check_deadline(&self) -> Result<(), Error> {
        match self.target.deadline_at {
            Some(at) if now_ms() >= at => Err(Error::Fail(format!(
                "stage {} passed its overall deadline before the engine could finish{}",
                self.position,
                if self.target.message.is_empty() {
                    String::new()
                } else {
                    format!(" (last seen: {})", self.target.message)
                }
            ))),
            _ => Ok(()),
        }
    }

    /// The overall deadline of a deploy or rollback of `d` for this stage.
    pub fn deadline_ms(&self, d: &Deployment) -> i64 {
        deployment::overall_deadline_ms(d, self.target.deadline_minutes)
    }

    /// Fails the job when `live` is not the object this stage's deploy
    /// wrote to (same name, other uid).
    pub fn check_same_object(&self, live: &Deployment) -> Result<(), Error> {
        self.workload().check_same_object(live)
    }

    /// What `d` says about the stage's container when it is not the one
    /// the job expects: renamed or removed, else the image it runs.
    pub fn container_now(&self, d: &Deployment) -> String {
        self.workload().container_now(d)
    }

    /// The client of the stage's cluster.
    pub async fn client(&self, ctx: &Context) -> Result<ClusterClient, Error> {
        ctx.cluster_client(self.target.cluster_id).await
    }

    /// The stage's Deployment; fails the job when it is gone.
    pub async fn read(&self, client: &ClusterClient) -> Result<Deployment, Error> {
        self.workload().read(client).await
    }

    /// The image the stage's container runs in `live`; fails the job when
    /// the Deployment has no such container.
    pub fn current_image(&self, live: &Deployment) -> Result<String, Error> {
        deployment::container_image(live, &self.target.container)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Fail(format!(
                    "Deployment {} has no container {} (it has {})",
                    self.name(),
                    self.target.container,
                    deployment::container_names(live).join(", ")
                ))
            })
    }

    /// `d`'s container runs the order's image.
    pub fn runs_image(&self, d: &Deployment) -> bool {
        deployment::container_image(d, &self.target.container) == Some(self.target.image.as_str())
    }

    /// Sets the container's image to the order's, writing only while the
    /// live template differs (so a resumed job never writes twice); the
    /// Deployment as written.
    pub async fn set_image(
        &self,
        client: &ClusterClient,
        live: Deployment,
    ) -> Result<Deployment, Error> {
        let target = &self.target;
        let patch = |d: Deployment| async move {
            let version = d.metadata.resource_version.unwrap_or_default();
            client
                .patch_image(
                    &target.namespace,
                    &target.deployment,
                    &target.container,
                    &target.image,
                    &version,
                )
                .await
        };
        match self
            .write_until(client, live, |d| self.runs_image(d), |_| None, patch)
            .await?
        {
            Written::Done(live) => Ok(*live),
            Written::Refused(reason) => Err(Error::Fail(reason)),
        }
    }

    /// Records what the deploy replaces (`live`, whose container runs
    /// `image`) and the Deployment's uid, once, before the first write: a
    /// resumed job then knows what was there, follows that object only, and
    /// a rollback has something to restore.
    pub async fn remember_replaced(
        &self,
        ctx: &Context,
        job: &Job,
        live: &Deployment,
        image: &str,
    ) -> Result<(), Error> {
        let target = &self.target;
        if target.replaced_image.is_some() {
            return Ok(());
        }
        let revision = deployment::revision(&live.metadata);
        let template = serde_json::to_string(&live.spec.template).unwrap_or_default();
        let failing = deployment::past_progress_deadline(live);
        let message = format!(
            "{} in {}: {image}{} → {}{}",
            self.name(),
            target.cluster,
            revision
                .as_deref()
                .map(|r| format!(" (revision {r})"))
                .unwrap_or_default(),
            target.image,
            if failing {
                "; note: its last rollout had already passed its progress deadline"
            } else {
                ""
            }
        );
        let replaced = Replaced {
            image,
            revision: revision.as_deref(),
            template: &template,
            uid: live.metadata.uid.as_deref(),
            failing,
        };
        work_orders::record_replaced(
            &ctx.db,
            &job.lease,
            self.order_id,
            self.position,
            &replaced,
            &message,
        )
        .await?;
        Ok(())
    }

    /// Writes with `write` until `done` holds for the live Deployment (see
    /// [`Workload::write_until`]).
    pub async fn write_until<Fut>(
        &self,
        client: &ClusterClient,
        live: Deployment,
        done: impl Fn(&Deployment) -> bool,
        refuse: impl Fn(&Deployment) -> Option<String>,
        write: impl Fn(Deployment) -> Fut,
    ) -> Result<Written, Error>
    where
        Fut: Future<Output = Result<Deployment, KubeError>>,
    {
        self.workload()
            .write_until(client, live, done, refuse, write)
            .await
    }

    /// Follows the Deployment until its rollout completes or fails, or the
    /// stage's overall deadline passes (see [`Workload::follow`]); with
    /// `report_verifying`, the stage is reported `verifying` once all new
    /// pods are updated.
    #[allow(clippy::too_many_arguments)]
    pub fn follow<'a>(
        &'a self,
        ctx: &'a Context,
        job: &'a Job,
        client: &'a ClusterClient,
        live: Deployment,
        report_verifying: bool,
        ours: impl Fn(&Deployment) -> bool + 'a,
        enough: impl Fn(&Deployment) -> bool + 'a,
    ) -> impl Future<Output = Result<Followed, Error>> + 'a {
        // Boxed before the future is made (see `Workload::follow`).
        let live = Box::new(live);
        async move {
            let verifying = ReportVerifying {
                stage: self,
                ctx,
                job,
                pending: report_verifying,
            };
            self.workload()
                .follow_boxed(ctx, client, live, ours, enough, verifying)
                .await
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

/// What following a rollout tells once all new pods are updated.
pub(super) trait Available: Send {
    /// All new pods are updated (`message` says so); a note answered ends
    /// the wait as moot.
    fn available(
        &mut self,
        message: String,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send;
}

/// Nothing to tell.
impl Available for () {
    async fn available(&mut self, _: String) -> Result<Option<String>, Error> {
        Ok(None)
    }
}

/// Reports the stage `verifying`, once.
struct ReportVerifying<'a> {
    stage: &'a Stage,
    ctx: &'a Context,
    job: &'a Job,
    pending: bool,
}

impl Available for ReportVerifying<'_> {
    async fn available(&mut self, message: String) -> Result<Option<String>, Error> {
        if !self.pending {
            return Ok(None);
        }
        self.pending = false;
        let reported = self
            .stage
            .report(
                self.ctx,
                self.job,
                Outcome::Verifying,
                message,
                StageRecord::default(),
            )
            .await?;
        Ok(match reported {
            Done::Moot(note) => Some(note),
            _ => None,
        })
    }
}

/// A Deployment a job drives: what the rollout code shared by stages and
/// fast-path deployments needs to know of it.
pub(super) struct Workload<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub deployment: &'a str,
    pub container: &'a str,
    /// The uid the job's first write recorded; another uid under the same
    /// name is another object.
    pub uid: Option<&'a str>,
    /// When the overall deadline passes.
    pub deadline_at: Option<i64>,
    /// Whose deadline it is, as a failure says it: "the stage's".
    pub deadline_of: &'static str,
}

impl<'a> Workload<'a> {
    /// A fast-path deployment's Deployment.
    pub fn of_deployment(t: &'a DeployTarget) -> Workload<'a> {
        Workload {
            cluster: &t.cluster,
            namespace: &t.namespace,
            deployment: &t.deployment,
            container: &t.container,
            uid: t.deployment_uid.as_deref(),
            deadline_at: t.deadline_at,
            deadline_of: "the deployment's",
        }
    }
}

impl Workload<'_> {
    /// `namespace/deployment`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.deployment)
    }

    /// Fails the job when `live` is not the object the job wrote to (same
    /// name, other uid).
    pub fn check_same_object(&self, live: &Deployment) -> Result<(), Error> {
        match deployment::replaced(self.uid, live) {
            Some(message) => Err(Error::Fail(format!("{}: {message}", self.name()))),
            None => Ok(()),
        }
    }

    /// What `d` says about the container when it is not the one the job
    /// expects: renamed or removed, else the image it runs.
    pub fn container_now(&self, d: &Deployment) -> String {
        let container = self.container;
        match deployment::container_image(d, container) {
            Some(image) => format!("it now runs {image}"),
            None => format!(
                "container {container} is gone (renamed or removed; the Deployment has {})",
                deployment::container_names(d).join(", ")
            ),
        }
    }

    /// The Deployment; fails the job when it is gone.
    pub async fn read(&self, client: &ClusterClient) -> Result<Deployment, Error> {
        client
            .deployment(self.namespace, self.deployment)
            .await?
            .ok_or_else(|| {
                Error::Fail(format!(
                    "Deployment {} does not exist in cluster {}",
                    self.name(),
                    self.cluster
                ))
            })
    }

    /// Writes with `write` until `done` holds for the live Deployment. A
    /// 409 reads it again (five times at most); a transient failure retries
    /// the job later; any other failure fails it; a reason from `refuse`
    /// (asked before each write) ends it without writing.
    pub async fn write_until<Fut>(
        &self,
        client: &ClusterClient,
        mut live: Deployment,
        done: impl Fn(&Deployment) -> bool,
        refuse: impl Fn(&Deployment) -> Option<String>,
        write: impl Fn(Deployment) -> Fut,
    ) -> Result<Written, Error>
    where
        Fut: Future<Output = Result<Deployment, KubeError>>,
    {
        let mut conflicts = 0;
        while !done(&live) {
            if let Some(reason) = refuse(&live) {
                return Ok(Written::Refused(reason));
            }
            match write(live.clone()).await {
                Ok(written) => live = written,
                Err(KubeError::Conflict(m)) if conflicts < 5 => {
                    conflicts += 1;
                    tracing::debug!(error = %m, "conflict; reading again");
                    live = self.read(client).await?;
                    self.check_same_object(&live)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Written::Done(Box::new(live)))
    }

    /// Follows the Deployment until its rollout completes or fails, or the
    /// overall deadline passes. `ours` tells whether the live template is
    /// still the one the job wrote; `available` is told each time all new
    /// pods are seen updated (a note it answers ends the wait as moot);
    /// `enough` (for a rollback onto a template that was failing already)
    /// ends the wait before the rollout completes.
    ///
    /// A job spends most of its life in this wait, and a thousand of them
    /// may wait at once, so the Deployment (2.5 KB as a typed object) is
    /// boxed before the future is made: an async fn's arguments stay in
    /// its future for the whole of its life, next to the copy it works on.
    pub fn follow<'a>(
        &'a self,
        ctx: &'a Context,
        client: &'a ClusterClient,
        live: Deployment,
        ours: impl Fn(&Deployment) -> bool + 'a,
        enough: impl Fn(&Deployment) -> bool + 'a,
        available: impl Available + 'a,
    ) -> impl Future<Output = Result<Followed, Error>> + 'a {
        self.follow_boxed(ctx, client, Box::new(live), ours, enough, available)
    }

    async fn follow_boxed(
        &self,
        ctx: &Context,
        client: &ClusterClient,
        mut live: Box<Deployment>,
        ours: impl Fn(&Deployment) -> bool,
        enough: impl Fn(&Deployment) -> bool,
        mut available: impl Available,
    ) -> Result<Followed, Error> {
        let target = self;
        let uid = live.metadata.uid.clone();
        let watch = ctx.kube.watch(client, target.namespace);
        let mut changes = watch.changes();
        let mut unreachable_since: Option<i64> = None;
        let recheck = ctx.settings.recheck;
        // The watch's copy is taken when it changes, not compared by
        // resourceVersion: what it holds now may be older than `live`.
        let mut watched = watch
            .get(target.deployment)
            .and_then(|d| d.metadata.resource_version.clone());
        let mut in_watch = watched.is_some();
        let deadline = target.deadline_at.map(|at| {
            tokio::time::Instant::now()
                + std::time::Duration::from_millis((at - now_ms()).max(0) as u64)
        });
        let mut last_seen = String::new();
        loop {
            match watch.get(target.deployment) {
                Some(seen) => {
                    in_watch = true;
                    if seen.metadata.resource_version != watched {
                        watched = seen.metadata.resource_version.clone();
                        if let Some(message) = deployment::replaced(uid.as_deref(), &seen) {
                            return Ok(self.lost(message));
                        }
                        if later_or_same(&seen, &live) {
                            *live = (*seen).clone();
                        }
                    }
                }
                // Gone from the watch: deleted (perhaps created again).
                None if in_watch => {
                    in_watch = false;
                    match client.deployment(target.namespace, target.deployment).await {
                        Ok(None) => return Ok(self.deleted()),
                        Ok(Some(d)) => {
                            if let Some(message) = deployment::replaced(uid.as_deref(), &d) {
                                return Ok(self.lost(message));
                            }
                            *live = d;
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "cannot read the Deployment; still waiting")
                        }
                    }
                }
                None => {}
            }
            if !ours(&live) {
                return Ok(Followed::Failed(
                    Some((*live).clone()),
                    format!(
                        "{} was changed by someone else during the rollout ({})",
                        self.name(),
                        self.container_now(&live)
                    ),
                ));
            }
            if enough(&live) {
                return Ok(Followed::Complete(*live));
            }
            match deployment::evaluate(&live) {
                Progress::Complete => return Ok(Followed::Complete(*live)),
                Progress::Failed(message) => return Ok(Followed::Failed(Some(*live), message)),
                Progress::Verifying(message) => {
                    last_seen.clone_from(&message);
                    if let Some(note) = Box::pin(available.available(message)).await? {
                        return Ok(Followed::Moot(note));
                    }
                }
                Progress::Waiting(message) => last_seen = message,
            }
            let passed = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(recheck).await;
                    }
                }
                _ = passed => {
                    return Ok(Followed::Failed(
                        Some(*live),
                        format!(
                            "{} did not finish within {} overall deadline (last seen: {})",
                            self.name(),
                            self.deadline_of,
                            if last_seen.is_empty() { "no progress reported" } else { last_seen.as_str() }
                        ),
                    ));
                }
                _ = tokio::time::sleep(recheck) => {
                    match client.deployment(target.namespace, target.deployment).await {
                        Ok(Some(d)) => {
                            unreachable_since = None;
                            if let Some(message) = deployment::replaced(uid.as_deref(), &d) {
                                return Ok(self.lost(message));
                            }
                            if later_or_same(&d, &live) {
                                *live = d;
                            }
                        }
                        Ok(None) => return Ok(self.deleted()),
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

    /// The Deployment is gone.
    fn deleted(&self) -> Followed {
        Followed::Failed(
            None,
            format!("Deployment {} was deleted during the rollout", self.name()),
        )
    }

    /// The Deployment was replaced by another object of the same name.
    fn lost(&self, message: String) -> Followed {
        Followed::Failed(None, format!("{}: {message}", self.name()))
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

/// Whether `a` is the same version of the object as `b` or a later one,
/// by `metadata.generation` (a sequence number of the object's spec;
/// resourceVersions are opaque and never ordered). Status changes keep the
/// generation, so a copy of the same generation is taken as it arrives.
fn later_or_same(a: &Deployment, b: &Deployment) -> bool {
    a.metadata.generation.unwrap_or(0) >= b.metadata.generation.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deployment(uid: &str, generation: i64, version: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                generation: Some(generation),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..Deployment::default()
        }
    }

    #[test]
    fn another_uid_is_another_object_whatever_its_version() {
        let ours = deployment("a", 3, "900");
        assert!(deployment::replaced(Some("a"), &ours).is_none());
        let again = deployment("b", 1, "99999");
        let message = deployment::replaced(Some("a"), &again).unwrap();
        assert!(message.contains("replaced") && message.contains("uid a is now b"));
        // Nothing recorded yet: nothing to compare.
        assert!(deployment::replaced(None, &again).is_none());
    }

    #[test]
    fn versions_of_one_object_are_ordered_by_generation_not_resource_version() {
        // resourceVersions are opaque: "10" after "9" means nothing.
        assert!(!later_or_same(
            &deployment("a", 2, "10"),
            &deployment("a", 3, "9")
        ));
        assert!(later_or_same(
            &deployment("a", 3, "1"),
            &deployment("a", 3, "2")
        ));
        assert!(later_or_same(
            &deployment("a", 4, "x"),
            &deployment("a", 3, "y")
        ));
    }
}
