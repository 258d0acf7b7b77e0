//! The runner, the same for every kind of job: claims due jobs with a
//! lease, renews the leases of the jobs it runs in one statement, hands
//! each job to its kind in a `job` tracing span, retries with backoff,
//! gives up after `max_attempts` (the kind records the failure), closes
//! what a kind left open, stops a job whose lease is gone (cancelled, or
//! taken over), and gives its leases back when it stops.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument;

use super::{Context, Done, Error, Registered, Registry, kinds};
use crate::db::jobs::{self, Job};
use crate::db::{Db, now_ms};
use crate::kube::KubeDriver;
use crate::prometheus::PrometheusClient;
use crate::secret::Sealer;
use crate::smoke::SmokeClient;

/// How the engine paces itself.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How long a claimed job stays this server's without a renewal.
    pub lease: Duration,
    /// Jobs one server works on at once.
    pub max_jobs: usize,
    /// How often other servers' new jobs are looked for.
    pub poll: Duration,
    /// Re-read of a Deployment when its watch has been quiet this long.
    pub recheck: Duration,
    /// Claims of a job that keeps failing before its kind records the
    /// failure.
    pub max_attempts: i64,
    /// How long a lane may go without a deploy before it is removed.
    pub lane_ttl: Duration,
    /// Seconds between a notification's attempts: the first is sent after
    /// the first entry, and it fails after the last.
    pub webhook_retry: Vec<u64>,
    /// Notifications may go to the local network and this host.
    pub webhook_local_network: bool,
    /// The server's public URL, for the links notifications carry.
    pub public_url: Option<String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            max_jobs: 1000,
            poll: Duration::from_secs(1),
            recheck: Duration::from_secs(10),
            max_attempts: 8,
            lane_ttl: Duration::from_secs(3 * 24 * 3600),
            webhook_retry: crate::domain::notify::RETRY_SCHEDULE.to_vec(),
            webhook_local_network: false,
            public_url: None,
        }
    }
}

/// One server's engine.
pub struct Engine {
    ctx: Context,
    kinds: Registry,
    /// The names claimed: the registered kinds.
    names: Vec<&'static str>,
    owner: String,
    slots: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    /// Jobs being worked on here (only their leases are renewed), each
    /// with the flag that stops it when its lease is gone.
    running: Mutex<HashMap<i64, watch::Sender<bool>>>,
    /// Renews (and so checks) the leases now: a job was cancelled here.
    check_leases: Notify,
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

impl Engine {
    /// An engine running every kind of this version ([`kinds`]).
    pub fn new(
        db: Db,
        sealer: Sealer,
        kube: Arc<KubeDriver>,
        prometheus: Arc<PrometheusClient>,
        settings: EngineSettings,
    ) -> Arc<Self> {
        Self::with_kinds(db, sealer, kube, prometheus, settings, kinds())
    }

    /// An engine running the kinds of `registry` only.
    pub fn with_kinds(
        db: Db,
        sealer: Sealer,
        kube: Arc<KubeDriver>,
        prometheus: Arc<PrometheusClient>,
        settings: EngineSettings,
        registry: Registry,
    ) -> Arc<Self> {
        let owner = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "rollway".into()),
            std::process::id(),
            rand::random::<u32>()
        );
        let max_jobs = settings.max_jobs;
        Arc::new(Self {
            ctx: Context {
                db,
                sealer,
                kube,
                prometheus,
                smoke: SmokeClient::new(),
                http: super::notify::client(settings.webhook_local_network),
                settings,
                wake: Notify::new(),
            },
            names: registry.names(),
            kinds: registry,
            owner,
            slots: Arc::new(Semaphore::new(max_jobs)),
            stop: watch::channel(false).0,
            running: Mutex::new(HashMap::new()),
            check_leases: Notify::new(),
        })
    }

    /// This server's name on the leases it holds.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Looks for due jobs now (a job was just queued here).
    pub fn wake(&self) {
        self.ctx.wake();
    }

    /// Checks the leases of the jobs running here now rather than at the
    /// next renewal (a job was just cancelled), so a cancelled job stops at
    /// once on this server; other servers notice at their next renewal.
    pub fn check_leases(&self) {
        self.check_leases.notify_one();
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
        match jobs::release_all(&self.ctx.db, &self.owner).await {
            Ok(n) if n > 0 => tracing::info!(jobs = n, "gave back job leases"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not give back job leases"),
        }
    }

    async fn run(self: Arc<Self>) {
        tokio::spawn(self.clone().renew_leases());
        let mut stop = self.stop.subscribe();
        let lease_ms = self.ctx.settings.lease.as_millis() as i64;
        loop {
            if *stop.borrow() {
                return;
            }
            let free = self.slots.available_permits().min(100);
            let mut claimed = 0;
            if free > 0 {
                match jobs::claim(
                    &self.ctx.db,
                    &self.owner,
                    &self.names,
                    lease_ms,
                    free as i64,
                )
                .await
                {
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
                _ = self.ctx.wake.notified() => {}
                _ = tokio::time::sleep(self.ctx.settings.poll) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Renews every lease this server holds, all in one statement, three
    /// times per lease period (or at once when asked); a job whose lease
    /// is gone is told to stop.
    async fn renew_leases(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let lease = self.ctx.settings.lease;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(lease / 3) => {}
                _ = self.check_leases.notified() => {}
                _ = stop.changed() => return,
            }
            let ids: Vec<i64> = self
                .running
                .lock()
                .map(|r| r.keys().copied().collect())
                .unwrap_or_default();
            match jobs::renew(&self.ctx.db, &self.owner, &ids, lease.as_millis() as i64).await {
                Ok(held) => {
                    // Jobs that started after the renewal was sent are not judged.
                    let held: HashSet<i64> = held.into_iter().collect();
                    let asked: HashSet<i64> = ids.into_iter().collect();
                    if let Ok(running) = self.running.lock() {
                        for (id, lost) in running.iter() {
                            if asked.contains(id) && !held.contains(id) {
                                lost.send_replace(true);
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing job leases failed"),
            }
        }
    }

    /// Works on one job, in a span naming the job, its kind, and the work
    /// order and stage it drives, so one rollout can be followed in the
    /// log (Kubernetes calls open their spans inside it).
    async fn drive(self: Arc<Self>, job: Job) {
        let stage = job.subject.stage();
        let span = tracing::info_span!(
            "job",
            job = job.id,
            kind = %job.kind,
            work_order = stage.map(|(order, _)| order),
            stage = stage.map(|(_, position)| position),
            attempt = job.attempts,
        );
        self.drive_in_span(job).instrument(span).await
    }

    /// The job's lease is renewed by [`Engine::renew_leases`] while it runs.
    async fn drive_in_span(&self, job: Job) {
        let Some(kind) = self.kinds.get(&job.kind) else {
            // Claims name the registered kinds only.
            tracing::warn!("no job kind of this name here");
            return;
        };
        let (lost, mut lease_gone) = watch::channel(false);
        if let Ok(mut running) = self.running.lock() {
            running.insert(job.id, lost);
        }
        let _running = Running(self, job.id);
        let mut stop = self.stop.subscribe();
        tracing::info!("job started");
        let ended = tokio::select! {
            ended = self.work(kind, &job) => ended,
            _ = stop.changed() => return,
            _ = lease_gone.wait_for(|gone| *gone) => {
                tracing::info!("job's lease is gone (cancelled, or taken over); stopping");
                return;
            }
        };
        match ended {
            Ok(Done::Later { at, note }) => {
                if let Err(e) = jobs::later(&self.ctx.db, &job.lease, at, &note).await {
                    tracing::warn!(error = %e, "could not put a job off");
                }
                tracing::info!(note, at, "job put off");
            }
            Ok(Done::Held { stop, note }) => {
                let at = now_ms() + super::hold::LOOK_AGAIN_MS;
                if let Err(e) = jobs::hold(&self.ctx.db, &job.lease, stop, at, &note).await {
                    tracing::warn!(error = %e, "could not hold a job");
                }
                tracing::info!(note, stop, "job held by a line stop");
            }
            Ok(done) => {
                let note = match &done {
                    Done::Moot(note) => note.as_str(),
                    _ => "",
                };
                // Closes a job its kind's last write did not close.
                if let Err(e) = jobs::finish(&self.ctx.db, &job.lease, note).await {
                    tracing::warn!(error = %e, "could not close a job");
                }
                tracing::info!(note, "job done");
            }
            Err(Error::Lost) => {
                tracing::info!("job taken over by another worker");
            }
            Err(Error::Retry(message) | Error::Fail(message)) => {
                let pause = 1000_i64 << job.attempts.clamp(0, 6);
                tracing::info!(error = %message, "job will be retried");
                if let Err(e) =
                    jobs::retry_at(&self.ctx.db, &job.lease, now_ms() + pause, &message).await
                {
                    tracing::warn!(error = %e, "could not reschedule a job");
                }
            }
        }
    }

    /// Runs the job; a failure, or a job that has been retried enough, is
    /// recorded by its kind. An error left is one of recording it.
    async fn work(&self, kind: &dyn Registered, job: &Job) -> Result<Done, Error> {
        match kind.run(&self.ctx, job).await {
            Err(Error::Fail(message)) => kind.fail(&self.ctx, job, message).await,
            Err(Error::Retry(message)) if job.attempts >= self.ctx.settings.max_attempts => {
                let message = format!("gave up after {} attempts: {message}", job.attempts);
                kind.fail(&self.ctx, job, message).await
            }
            other => other,
        }
    }
}
