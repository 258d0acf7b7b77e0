//! The durable job engine. Work lives in the `jobs` table, queued in the
//! same transaction as the change that asks for it; a job row names its
//! kind and its subject (`db::jobs`). The runner ([`Engine`], `runner.rs`)
//! is the same for every kind: it claims due jobs of the kinds it knows
//! with a lease, renews the leases while the jobs run, retries with backoff
//! what can be retried, gives up after `max_attempts`, and gives its leases
//! back when it stops; a job whose server died is claimed again once its
//! lease runs out. Every write a job makes is fenced on its lease
//! (`db::jobs::check_lease`), so a worker that lost a job stops at its next
//! write.
//!
//! Each kind of job is a module implementing [`Kind`] and registered in
//! [`kinds`]: `rolling.rs` deploys a stage's image and follows the rollout,
//! `canary.rs` does it through OpenKruise Rollout's steps and pauses,
//! `rollback.rs` restores what a stage replaced, `verify.rs` runs a
//! stage's verification plan once its rollout is available, `fast_path.rs`
//! deploys a CI fast-path deployment (its lane first) and removes lanes,
//! `notify.rs` sends a notification's delivery. What a line stop holds is
//! `hold.rs`'s.
//! What the stage-run kinds
//! share (reading the stage, writing only when the live template differs,
//! following the rollout on the shared watch, reporting through the state
//! machine) is in `stage.rs`.
//!
//! Adding a kind: write `engine/<kind>.rs` with a unit struct implementing
//! [`Kind`] (its `NAME` is what its job rows carry), add `mod <kind>;` and
//! one `.with(<kind>::…)` line to [`kinds`], and queue its jobs with
//! `db::jobs::enqueue` in the transaction that asks for the work. No other
//! kind changes.

mod canary;
mod fast_path;
mod hold;
mod notify;
mod rollback;
mod rolling;
mod runner;
mod stage;
mod verify;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::db::Db;
use crate::db::jobs::Job;
use crate::kube::{KubeDriver, KubeError};
use crate::prometheus::PrometheusClient;
use crate::secret::Sealer;
use crate::smoke::SmokeClient;

pub use canary::{not_served as rollouts_not_served, routing as canary_routing};
pub use runner::{Engine, EngineSettings};

/// Why a job's work stopped before it was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The job's lease is no longer this worker's (another worker took the
    /// job over): nothing more is written.
    #[error("the job's lease is no longer held")]
    Lost,
    /// Worth trying again later (the cluster or the database did not
    /// answer); the runner retries with backoff.
    #[error("{0}")]
    Retry(String),
    /// The work cannot succeed; the runner has the kind record the failure
    /// ([`Kind::fail`]).
    #[error("{0}")]
    Fail(String),
}

impl From<crate::db::error::Error> for Error {
    /// A fenced write refused for a lost lease is [`Error::Lost`]; any other
    /// database failure is worth retrying.
    fn from(e: crate::db::error::Error) -> Self {
        match e {
            crate::db::error::Error::LeaseLost { .. } => Error::Lost,
            other => Error::Retry(format!("{other:#}")),
        }
    }
}

impl From<KubeError> for Error {
    /// Transient Kubernetes failures are retried; a refusal, a missing
    /// object or an unusable cluster fails the job.
    fn from(e: KubeError) -> Self {
        match e {
            KubeError::Transient(m) => Error::Retry(m),
            other => Error::Fail(other.message().to_string()),
        }
    }
}

/// How a job's work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Its last write recorded the outcome on the subject (and closed the
    /// job in the same transaction).
    Recorded,
    /// There was nothing (more) to do; the note, kept on the job, says why.
    Moot(String),
    /// Nothing to do yet: the job runs again at `at` (ms since the epoch),
    /// its attempts counted afresh; the note says what it waits for.
    Later { at: i64, note: String },
    /// Held by line stop `stop`: the job runs again once the stop is
    /// lifted (and looks again now and then); the note says why.
    Held { stop: i64, note: String },
}

/// What every job works with: the database, the sealer that opens stored
/// credentials, the Kubernetes driver, the clients verification asks
/// (Prometheus, smoke checks) and the engine's pacing.
pub struct Context {
    pub db: Db,
    pub sealer: Sealer,
    pub kube: Arc<KubeDriver>,
    pub prometheus: Arc<PrometheusClient>,
    pub smoke: SmokeClient,
    /// The client notifications go out through.
    pub http: reqwest::Client,
    pub settings: EngineSettings,
    wake: Notify,
}

impl Context {
    /// Has the runner look for due jobs now (a job just queued another).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The client of cluster `cluster_id`.
    pub async fn cluster_client(
        &self,
        cluster_id: i64,
    ) -> Result<crate::kube::ClusterClient, Error> {
        let credentials =
            crate::db::clusters::credentials(&self.db.pool, &self.sealer, cluster_id).await?;
        Ok(self.kube.client(&credentials).await?)
    }
}

/// One kind of job: the name its rows carry, its work, and what it records
/// when the work fails for good. Lease, renewal, retries and giving up are
/// the runner's.
pub trait Kind: Send + Sync + 'static {
    /// The name job rows of this kind carry (`jobs.kind`).
    const NAME: &'static str;

    /// Works on `job` to its end. Every write is fenced on `job.lease`.
    /// [`Error::Retry`] has the runner try again later, [`Error::Fail`]
    /// has it call [`Kind::fail`], [`Error::Lost`] lets the job go.
    ///
    /// The future lives as long as the job, and a thousand may wait at
    /// once: a step it awaits once and briefly but whose future is large
    /// (the hold check, the image write, the follow itself) is awaited as
    /// `Box::pin(step).await`, so its room is taken only while it runs
    /// rather than for the job's whole life (docs/benchmarks.md, engine).
    fn run(&self, ctx: &Context, job: &Job) -> impl Future<Output = Result<Done, Error>> + Send;

    /// Records on the job's subject that its work failed for good
    /// (`message` says why): `run` answered [`Error::Fail`], or its retries
    /// ran out.
    fn fail(
        &self,
        ctx: &Context,
        job: &Job,
        message: String,
    ) -> impl Future<Output = Result<Done, Error>> + Send;
}

/// [`Kind`] as the registry holds it (object-safe).
trait Registered: Send + Sync {
    fn run<'a>(&'a self, ctx: &'a Context, job: &'a Job) -> BoxFuture<'a, Result<Done, Error>>;
    fn fail<'a>(
        &'a self,
        ctx: &'a Context,
        job: &'a Job,
        message: String,
    ) -> BoxFuture<'a, Result<Done, Error>>;
}

impl<K: Kind> Registered for K {
    fn run<'a>(&'a self, ctx: &'a Context, job: &'a Job) -> BoxFuture<'a, Result<Done, Error>> {
        Box::pin(Kind::run(self, ctx, job))
    }

    fn fail<'a>(
        &'a self,
        ctx: &'a Context,
        job: &'a Job,
        message: String,
    ) -> BoxFuture<'a, Result<Done, Error>> {
        Box::pin(Kind::fail(self, ctx, job, message))
    }
}

/// The kinds an engine runs, by name. It claims jobs of these kinds only,
/// so a job of a kind this version does not know waits for a server that
/// does.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Box<dyn Registered>>,
}

impl Registry {
    /// Adds `kind`. Two kinds under one name are a programming error.
    pub fn with<K: Kind>(mut self, kind: K) -> Self {
        let previous = self.kinds.insert(K::NAME, Box::new(kind));
        assert!(previous.is_none(), "job kind {} registered twice", K::NAME);
        self
    }

    /// The names of the kinds registered.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    fn get(&self, name: &str) -> Option<&dyn Registered> {
        self.kinds.get(name).map(|k| k.as_ref())
    }
}

/// Every kind of job this version runs.
pub fn kinds() -> Registry {
    Registry::default()
        .with(rolling::RollingDeploy)
        .with(canary::CanaryDeploy)
        .with(rollback::Rollback)
        .with(verify::Verify)
        .with(fast_path::FastDeploy)
        .with(fast_path::RemoveLane)
        .with(notify::Notify)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::work_order::JobKind;

    #[test]
    fn every_job_the_state_machine_queues_has_a_kind_to_run_it() {
        let registry = kinds();
        for kind in JobKind::ALL {
            assert!(
                registry.get(kind.as_str()).is_some(),
                "no engine kind named {}",
                kind.as_str()
            );
        }
        assert_eq!(
            registry.names(),
            [
                "canary",
                "deploy",
                "fast_deploy",
                "notify",
                "remove_lane",
                "rollback",
                "verify"
            ]
        );
    }

    struct Twin;

    impl Kind for Twin {
        const NAME: &'static str = "deploy";
        async fn run(&self, _: &Context, _: &Job) -> Result<Done, Error> {
            Ok(Done::Recorded)
        }
        async fn fail(&self, _: &Context, _: &Job, message: String) -> Result<Done, Error> {
            Ok(Done::Moot(message))
        }
    }

    #[test]
    #[should_panic(expected = "job kind deploy registered twice")]
    fn a_name_runs_one_kind() {
        let _ = kinds().with(Twin);
    }

    #[test]
    fn a_lost_lease_is_told_apart_by_its_type() {
        let lost = crate::db::error::Error::LeaseLost { job_id: 7 };
        assert_eq!(Error::from(lost), Error::Lost);
        // A conflict that merely mentions leases is not a lost lease.
        let conflict = crate::db::error::Error::Conflict("job 7 is no longer held".into());
        assert!(matches!(Error::from(conflict), Error::Retry(_)));
    }

    #[test]
    fn kubernetes_failures_retry_only_when_transient() {
        assert_eq!(
            Error::from(KubeError::Transient("503".into())),
            Error::Retry("503".into())
        );
        for refusal in [
            KubeError::Refused("forbidden".into()),
            KubeError::NotFound("gone".into()),
            KubeError::Conflict("changed".into()),
        ] {
            assert!(matches!(Error::from(refusal), Error::Fail(_)));
        }
    }
}
