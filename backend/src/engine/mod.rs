//! The durable deploy engine. Stage work lives in the `jobs` table, queued
//! in the same transaction as the state change that asks for it. Each
//! server runs one engine: it claims due jobs with a lease, renews the
//! lease while it works, and gives leases back when it stops; a job whose
//! server died is claimed again once its lease runs out. Before any write
//! the engine compares the live pod template with the one it wants, so a
//! resumed job never writes twice. Progress is followed on a shared watch
//! of the namespace's Deployments, with a slow re-read as a safety net.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use sqlx::Row;
use tokio::sync::{Notify, Semaphore, watch};

use crate::db::audit::AuditActor;
use crate::db::jobs::{self, Job};
use crate::db::work_orders::{self, Source, StageRecord};
use crate::db::{Db, now_ms};
use crate::domain::work_order::{Command, JobKind, Outcome, StageStatus};
use crate::error::Error;
use crate::kube::deployment::{self, Progress};
use crate::kube::{ClusterClient, KubeDriver, KubeError};
use crate::secret::Sealer;

/// How the engine paces itself.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// How long a claimed job stays this server's without a renewal.
    pub lease: Duration,
    /// Jobs one server works on at once.
    pub max_jobs: usize,
    /// How often other servers' new jobs are looked for.
    pub poll: Duration,
    /// Re-read of a Deployment when its watch has been quiet this long.
    pub recheck: Duration,
    /// Claims of a job that keeps failing before its stage is failed.
    pub max_attempts: i64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            max_jobs: 1000,
            poll: Duration::from_secs(1),
            recheck: Duration::from_secs(10),
            max_attempts: 8,
        }
    }
}

/// How a step of a job ended when it did not finish the job.
#[derive(Debug)]
enum Stop {
    /// Try again later (the cluster did not answer).
    Retry(String),
    /// The job is no longer this worker's.
    Lost,
}

type Step<T> = Result<T, Stop>;

/// One server's engine.
pub struct Engine {
    db: Db,
    sealer: Sealer,
    kube: Arc<KubeDriver>,
    owner: String,
    settings: EngineSettings,
    wake: Notify,
    slots: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    /// Jobs being worked on here: only their leases are renewed.
    running: std::sync::Mutex<std::collections::HashSet<i64>>,
}

/// Takes a job off the running set when its task ends, even by a panic.
struct Running<'a>(&'a Engine, i64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.0.running.lock() {
            running.remove(&self.1);
        }
    }
}

/// What a job works on, read fresh at each claim.
struct StageContext {
    order_id: i64,
    position: i64,
    target_image: String,
    status: StageStatus,
    replaced_image: Option<String>,
    replaced_revision: Option<String>,
    replaced_template: Option<String>,
    cluster_id: i64,
    cluster: String,
    namespace: String,
    deployment: String,
    container: String,
}

impl StageContext {
    fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.deployment)
    }
}

impl Engine {
    pub fn new(
        db: Db,
        sealer: Sealer,
        kube: Arc<KubeDriver>,
        settings: EngineSettings,
    ) -> Arc<Self> {
        let owner = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "rollway".into()),
            std::process::id(),
            rand::random::<u32>()
        );
        Arc::new(Self {
            db,
            sealer,
            kube,
            owner,
            settings,
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(settings.max_jobs)),
            stop: watch::channel(false).0,
            running: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// This server's name on the leases it holds.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Looks for due jobs now (a job was just queued here).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until [`Engine::shutdown`].
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move { engine.run().await })
    }

    /// Stops claiming, stops the running jobs and gives their leases back
    /// so another server takes them over at once.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        match jobs::release_all(&self.db, &self.owner).await {
            Ok(n) if n > 0 => tracing::info!(jobs = n, "gave back job leases"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not give back job leases"),
        }
    }

    async fn run(self: Arc<Self>) {
        tokio::spawn(self.clone().renew_leases());
        let mut stop = self.stop.subscribe();
        let lease_ms = self.settings.lease.as_millis() as i64;
        loop {
            if *stop.borrow() {
                return;
            }
            let free = self.slots.available_permits().min(100);
            let mut claimed = 0;
            if free > 0 {
                match jobs::claim(&self.db, &self.owner, lease_ms, free as i64).await {
                    Ok(found) => {
                        claimed = found.len();
                        for job in found {
                            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let engine = self.clone();
                            tokio::spawn(async move {
                                engine.drive(job).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            if claimed == free && claimed > 0 {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Renews every lease this server holds, all in one statement, three
    /// times per lease period.
    async fn renew_leases(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let lease_ms = self.settings.lease.as_millis() as i64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.lease / 3) => {}
                _ = stop.changed() => return,
            }
            let ids: Vec<i64> = self
                .running
                .lock()
                .map(|r| r.iter().copied().collect())
                .unwrap_or_default();
            if let Err(e) = jobs::renew(&self.db, &self.owner, &ids, lease_ms).await {
                tracing::warn!(error = %e, "renewing job leases failed");
            }
        }
    }

    /// Works on one job. Its lease is renewed by [`Engine::renew_leases`];
    /// every write the job makes is fenced on it, so a job that lost its
    /// lease stops at its next write.
    async fn drive(self: Arc<Self>, job: Job) {
        if let Ok(mut running) = self.running.lock() {
            running.insert(job.id);
        }
        let _running = Running(&self, job.id);
        let mut stop = self.stop.subscribe();
        let result = tokio::select! {
            r = self.work(&job) => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(()) => {}
            Err(Stop::Lost) => {
                tracing::info!(job = job.id, "job taken over by another worker");
            }
            Err(Stop::Retry(message)) => {
                if job.attempts >= self.settings.max_attempts {
                    let message = format!("gave up after {} attempts: {message}", job.attempts);
                    if let Err(Stop::Retry(e)) = self
                        .report(&job, Outcome::Failed, message, StageRecord::default())
                        .await
                    {
                        tracing::warn!(job = job.id, error = %e, "could not record a failure");
                    }
                    return;
                }
                let pause = 1000_i64 << job.attempts.clamp(0, 6);
                tracing::info!(job = job.id, attempt = job.attempts, error = %message, "job will be retried");
                if let Err(e) =
                    jobs::retry_at(&self.db, &job.lease, now_ms() + pause, &message).await
                {
                    tracing::warn!(job = job.id, error = %e, "could not reschedule a job");
                }
            }
        }
    }

    async fn work(&self, job: &Job) -> Step<()> {
        let ctx = self.context(job).await?;
        let expected = match job.kind {
            JobKind::Deploy => {
                matches!(ctx.status, StageStatus::Deploying | StageStatus::Verifying)
            }
            JobKind::Rollback => ctx.status == StageStatus::RollingBack,
        };
        if !expected {
            let note = format!("stage is {}; nothing to do", ctx.status);
            jobs::finish(&self.db, &job.lease, &note)
                .await
                .map_err(retry)?;
            return Ok(());
        }
        let client = match self
            .kube
            .client(&self.db, &self.sealer, ctx.cluster_id)
            .await
        {
            Ok(client) => client,
            Err(KubeError::Transient(m)) => return Err(Stop::Retry(m)),
            Err(e) => return self.fail(job, e.message().to_string()).await,
        };
        let Some(live) = self.read(job, &client, &ctx).await? else {
            return Ok(());
        };
        match job.kind {
            JobKind::Deploy => self.deploy(job, &client, &ctx, live).await,
            JobKind::Rollback => self.rollback(job, &client, &ctx, live).await,
        }
    }

    /// Reads the stage's Deployment; fails the stage when it is gone.
    async fn read(
        &self,
        job: &Job,
        client: &ClusterClient,
        ctx: &StageContext,
    ) -> Step<Option<Deployment>> {
        match client.deployment(&ctx.namespace, &ctx.deployment).await {
            Ok(Some(d)) => Ok(Some(d)),
            Ok(None) => {
                self.fail(
                    job,
                    format!(
                        "Deployment {} does not exist in cluster {}",
                        ctx.name(),
                        ctx.cluster
                    ),
                )
                .await?;
                Ok(None)
            }
            Err(KubeError::Transient(m)) => Err(Stop::Retry(m)),
            Err(e) => {
                self.fail(job, e.message().to_string()).await?;
                Ok(None)
            }
        }
    }

    async fn deploy(
        &self,
        job: &Job,
        client: &ClusterClient,
        ctx: &StageContext,
        live: Deployment,
    ) -> Step<()> {
        let Some(image) = deployment::container_image(&live, &ctx.container).map(str::to_string)
        else {
            return self
                .fail(
                    job,
                    format!(
                        "Deployment {} has no container {} (it has {})",
                        ctx.name(),
                        ctx.container,
                        deployment::container_names(&live).join(", ")
                    ),
                )
                .await;
        };
        if ctx.replaced_image.is_none() {
            // Recorded before the write, so a resumed job knows what was
            // there and a rollback has something to restore.
            let revision = deployment::revision(&live.metadata);
            let template = serde_json::to_string(&live.spec.template).unwrap_or_default();
            let message = format!(
                "{} in {}: {image}{} → {}",
                ctx.name(),
                ctx.cluster,
                revision
                    .as_deref()
                    .map(|r| format!(" (revision {r})"))
                    .unwrap_or_default(),
                ctx.target_image
            );
            work_orders::record_replaced(
                &self.db,
                &job.lease,
                ctx.order_id,
                ctx.position,
                &image,
                revision.as_deref(),
                &template,
                &message,
            )
            .await
            .map_err(lost_or_retry)?;
        }
        // Write only when the live template differs from the wanted one.
        let wanted = |d: &Deployment| {
            deployment::container_image(d, &ctx.container) == Some(ctx.target_image.as_str())
        };
        let patch = |d: Deployment| async move {
            let version = d.metadata.resource_version.unwrap_or_default();
            client
                .patch_image(
                    &ctx.namespace,
                    &ctx.deployment,
                    &ctx.container,
                    &ctx.target_image,
                    &version,
                )
                .await
        };
        let Some(live) = self
            .write_until(job, client, ctx, live, wanted, |_| None, patch)
            .await?
        else {
            return Ok(());
        };
        let target = ctx.target_image.clone();
        let container = ctx.container.clone();
        let outcome = self
            .follow(
                job,
                client,
                ctx,
                live,
                ctx.status == StageStatus::Verifying,
                move |d| deployment::container_image(d, &container) == Some(target.as_str()),
            )
            .await?;
        match outcome {
            Followed::Complete(d) => {
                let revision = deployment::revision(&d.metadata);
                let message = format!(
                    "{} runs {}{}",
                    ctx.name(),
                    ctx.target_image,
                    revision
                        .as_deref()
                        .map(|r| format!(" (revision {r})"))
                        .unwrap_or_default()
                );
                self.report(
                    job,
                    Outcome::Succeeded,
                    message,
                    StageRecord {
                        new_revision: revision,
                        ..StageRecord::default()
                    },
                )
                .await
            }
            Followed::Failed(d, message) => {
                self.report(
                    job,
                    Outcome::Failed,
                    message,
                    StageRecord {
                        new_revision: d.as_ref().and_then(|d| deployment::revision(&d.metadata)),
                        ..StageRecord::default()
                    },
                )
                .await
            }
        }
    }

    async fn rollback(
        &self,
        job: &Job,
        client: &ClusterClient,
        ctx: &StageContext,
        live: Deployment,
    ) -> Step<()> {
        // What to restore: the template of the ReplicaSet of the replaced
        // revision (as `kubectl rollout undo`), else the template recorded
        // when the stage deployed.
        let wanted_revision = ctx.replaced_revision.clone();
        let from_history = match &wanted_revision {
            Some(revision) => match client.replica_sets_of(&live).await {
                Ok(sets) => sets
                    .iter()
                    .find(|rs| {
                        deployment::revision(&rs.metadata).as_deref() == Some(revision.as_str())
                    })
                    .and_then(deployment::template_of),
                Err(KubeError::Transient(m)) => return Err(Stop::Retry(m)),
                Err(_) => None,
            },
            None => None,
        };
        let stored = ctx
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
                return self
                    .fail(
                        job,
                        "nothing to restore: the replaced pod template is unknown".into(),
                    )
                    .await;
            }
        };
        let restore_image = deployment::template_image(&restore, &ctx.container)
            .unwrap_or("?")
            .to_string();
        let restored = |d: &Deployment| deployment::same_template(&d.spec.template, &restore);
        let moved_on = |d: &Deployment| {
            let current = deployment::container_image(d, &ctx.container).unwrap_or("?");
            (current != ctx.target_image).then(|| {
                format!(
                    "{} now runs {current}, not {} that this stage deployed; not rolling back over a later change",
                    ctx.name(),
                    ctx.target_image
                )
            })
        };
        let write_back = |mut next: Deployment| {
            next.spec.template = restore.clone();
            async move { client.replace_deployment(&next).await }
        };
        let Some(live) = self
            .write_until(job, client, ctx, live, restored, moved_on, write_back)
            .await?
        else {
            return Ok(());
        };
        let wanted = restore.clone();
        let outcome = self
            .follow(job, client, ctx, live, true, move |d| {
                deployment::same_template(&d.spec.template, &wanted)
            })
            .await?;
        match outcome {
            Followed::Complete(d) => {
                let now = deployment::revision(&d.metadata);
                let message = format!(
                    "restored {source}: {} runs {restore_image} again{}",
                    ctx.name(),
                    now.as_deref()
                        .map(|r| format!(" (now revision {r})"))
                        .unwrap_or_default()
                );
                self.report(
                    job,
                    Outcome::Succeeded,
                    message,
                    StageRecord {
                        restored_revision: wanted_revision,
                        ..StageRecord::default()
                    },
                )
                .await
            }
            Followed::Failed(_, message) => {
                self.report(
                    job,
                    Outcome::Failed,
                    format!("rollback failed: {message}"),
                    StageRecord::default(),
                )
                .await
            }
        }
    }

    /// Writes with `write` until `done` holds for the live Deployment. A
    /// 409 reads it again (five times at most); a transient failure retries
    /// the job later; any other failure, or a reason from `refuse`, fails
    /// the stage. The Deployment as written, or `None` when the stage was
    /// failed here.
    #[allow(clippy::too_many_arguments)]
    async fn write_until<Fut>(
        &self,
        job: &Job,
        client: &ClusterClient,
        ctx: &StageContext,
        mut live: Deployment,
        done: impl Fn(&Deployment) -> bool,
        refuse: impl Fn(&Deployment) -> Option<String>,
        write: impl Fn(Deployment) -> Fut,
    ) -> Step<Option<Deployment>>
    where
        Fut: Future<Output = Result<Deployment, KubeError>>,
    {
        let mut conflicts = 0;
        while !done(&live) {
            if let Some(reason) = refuse(&live) {
                self.fail(job, reason).await?;
                return Ok(None);
            }
            match write(live.clone()).await {
                Ok(written) => live = written,
                Err(KubeError::Conflict(m)) if conflicts < 5 => {
                    conflicts += 1;
                    tracing::debug!(job = job.id, error = %m, "conflict; reading again");
                    let Some(fresh) = self.read(job, client, ctx).await? else {
                        return Ok(None);
                    };
                    live = fresh;
                }
                Err(KubeError::Transient(m)) => return Err(Stop::Retry(m)),
                Err(e) => {
                    self.fail(job, e.message().to_string()).await?;
                    return Ok(None);
                }
            }
        }
        Ok(Some(live))
    }

    /// Follows the Deployment until its rollout completes or fails. `ours`
    /// tells whether the live template is still the one this job wrote.
    async fn follow(
        &self,
        job: &Job,
        client: &ClusterClient,
        ctx: &StageContext,
        mut live: Deployment,
        mut verifying_reported: bool,
        ours: impl Fn(&Deployment) -> bool,
    ) -> Step<Followed> {
        let watch = self.kube.watch(client, &ctx.namespace);
        let mut changes = watch.changes();
        let mut unreachable_since: Option<i64> = None;
        loop {
            if let Some(seen) = watch.get(&ctx.deployment)
                && newer(&seen, &live)
            {
                live = (*seen).clone();
            }
            if !ours(&live) {
                return Ok(Followed::Failed(
                    Some(live.clone()),
                    format!(
                        "{} was changed by someone else during the rollout (it now runs {})",
                        ctx.name(),
                        deployment::container_image(&live, &ctx.container).unwrap_or("?")
                    ),
                ));
            }
            match deployment::evaluate(&live) {
                Progress::Complete => return Ok(Followed::Complete(live)),
                Progress::Failed(message) => return Ok(Followed::Failed(Some(live), message)),
                Progress::Verifying(message) if !verifying_reported => {
                    verifying_reported = true;
                    if job.kind == JobKind::Deploy {
                        self.report(job, Outcome::Verifying, message, StageRecord::default())
                            .await?;
                    }
                }
                _ => {}
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(self.settings.recheck).await;
                    }
                }
                _ = tokio::time::sleep(self.settings.recheck) => {
                    match client.deployment(&ctx.namespace, &ctx.deployment).await {
                        Ok(Some(d)) => {
                            unreachable_since = None;
                            if !newer(&live, &d) {
                                live = d;
                            }
                        }
                        Ok(None) => {
                            return Ok(Followed::Failed(None, format!("Deployment {} was deleted during the rollout", ctx.name())));
                        }
                        Err(e) => {
                            let since = *unreachable_since.get_or_insert_with(now_ms);
                            tracing::info!(job = job.id, error = %e, "cannot read the Deployment; still waiting");
                            if now_ms() - since > 15 * 60 * 1000 {
                                return Err(Stop::Retry(e.message().to_string()));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Records the engine's finding through the state machine.
    async fn report(
        &self,
        job: &Job,
        outcome: Outcome,
        message: String,
        record: StageRecord,
    ) -> Step<()> {
        let command = Command::Report {
            stage: job.stage_position as u32,
            outcome,
            message,
        };
        match work_orders::apply(
            &self.db,
            job.work_order_id,
            &command,
            Source::Engine { job: &job.lease },
            &record,
            &engine_actor(),
        )
        .await
        {
            Ok(_) => {
                if matches!(
                    command,
                    Command::Report {
                        outcome: Outcome::Failed,
                        ..
                    }
                ) {
                    // An automatic rollback may have been queued.
                    self.wake();
                }
                Ok(())
            }
            Err(Error::Conflict(m)) if m.contains("no longer held") => Err(Stop::Lost),
            Err(Error::Conflict(m)) => {
                tracing::info!(job = job.id, reason = %m, "report no longer applies");
                jobs::finish(&self.db, &job.lease, &m)
                    .await
                    .map_err(retry)?;
                Ok(())
            }
            Err(e) => Err(Stop::Retry(e.to_string())),
        }
    }

    async fn fail(&self, job: &Job, message: String) -> Step<()> {
        self.report(job, Outcome::Failed, message, StageRecord::default())
            .await
    }

    async fn context(&self, job: &Job) -> Step<StageContext> {
        let row = sqlx::query(
            "SELECT w.image, s.status, s.replaced_image, s.replaced_revision, s.replaced_template, \
             p.cluster_id, c.name AS cluster, p.namespace, p.deployment, p.container \
             FROM stage_runs s JOIN work_orders w ON w.id = s.work_order_id \
             JOIN apps p ON p.id = s.app_id JOIN clusters c ON c.id = p.cluster_id \
             WHERE s.work_order_id = $1 AND s.position = $2",
        )
        .bind(job.work_order_id)
        .bind(job.stage_position)
        .fetch_one(&self.db.pool)
        .await
        .map_err(|e| Stop::Retry(e.to_string()))?;
        let get = |e: sqlx::Error| Stop::Retry(e.to_string());
        let status: String = row.try_get("status").map_err(get)?;
        Ok(StageContext {
            order_id: job.work_order_id,
            position: job.stage_position,
            target_image: row.try_get("image").map_err(get)?,
            status: status.parse().map_err(Stop::Retry)?,
            replaced_image: row.try_get("replaced_image").map_err(get)?,
            replaced_revision: row.try_get("replaced_revision").map_err(get)?,
            replaced_template: row.try_get("replaced_template").map_err(get)?,
            cluster_id: row.try_get("cluster_id").map_err(get)?,
            cluster: row.try_get("cluster").map_err(get)?,
            namespace: row.try_get("namespace").map_err(get)?,
            deployment: row.try_get("deployment").map_err(get)?,
            container: row.try_get("container").map_err(get)?,
        })
    }
}

enum Followed {
    Complete(Deployment),
    Failed(Option<Deployment>, String),
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

fn retry(e: Error) -> Stop {
    Stop::Retry(e.to_string())
}

fn lost_or_retry(e: Error) -> Stop {
    match e {
        Error::Conflict(_) => Stop::Lost,
        other => Stop::Retry(other.to_string()),
    }
}

/// Who the timeline names for the engine's entries.
pub fn engine_actor() -> AuditActor {
    AuditActor {
        account_id: None,
        name: "engine".into(),
        ip: "local".into(),
    }
}
