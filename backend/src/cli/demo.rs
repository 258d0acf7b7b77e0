//! `rollway demo`: Rollway with nothing else to install. A throw-away
//! SQLite database in a directory of its own, seeded with two teams and
//! four services, an `engineer`, an `owner` and an `admin` with passwords
//! made up and printed now, two clusters (staging and prod) that are one
//! simulated cluster running in this process (OpenKruise Rollout
//! included, its pods serving synthetic traffic: a tag ending `-bad`
//! answers 20 % of requests with 500), the simulated cluster's own stand-in
//! for Prometheus, a stand-in GitLab with tags, and release items whose
//! stages verify what they ship. The simulated cluster runs fast: a
//! rollout takes seconds.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Failure, write_kubeconfig};
use crate::app::AppState;
use crate::auth::password;
use crate::config::{DatabaseConfig, DemoArgs, ServeConfig};
use crate::db::accounts::{self, AccountKind, NewAccount};
use crate::db::apps::AppFields;
use crate::db::audit::AuditActor;
use crate::db::clusters::{Connection, TokenChange};
use crate::db::release_items::ItemFields;
use crate::db::{self, Db};
use crate::domain::cluster::Environment;
use crate::domain::release_item::{Canary, CanaryStep, StageSpec, Strategy};
use crate::domain::tree::Role;
use crate::domain::verify::{MetricGate, Op, VerifyPlan};
use crate::gitlab::GitlabClient;
use crate::secret::{Secret, load_secret_key};
use crate::server;
use crate::sim::{DemoGitlab, DemoProject, Sim, SimConfig};

/// The teams and their services.
const TEAMS: [(&str, &str, [&str; 2]); 2] = [
    ("payments", "Payments", ["checkout", "ledger"]),
    ("discovery", "Discovery", ["search", "feed"]),
];

/// Every service's tags, newest first: good ones and one that fails a
/// fifth of its requests.
const TAGS: [&str; 4] = ["v1.3.0-bad", "v1.2.0", "v1.1.0", "v1.0.0"];

/// The registry the demo's images come from (never pulled).
const REGISTRY: &str = "registry.demo.local";

/// The stand-in GitLab's token (it lives in this process only).
const GITLAB_TOKEN: &str = "demo-gitlab-token";

/// The error-ratio gate every verified stage has: the new pods' share of
/// 5xx, from the simulated cluster's stand-in for Prometheus.
fn error_gate() -> MetricGate {
    MetricGate {
        name: "error ratio".into(),
        query: r#"sim_error_ratio{namespace="{{namespace}}",deployment="{{deployment}}",pod_template_hash="{{new_hash}}"}"#.into(),
        op: Op::Below,
        threshold: 0.05,
        interval_seconds: 5,
        count: 2,
        failure_limit: 0,
        inconclusive_limit: 1,
    }
}

pub async fn run(args: &DemoArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let mut serve_config = ServeConfig::from_args(&args.serve)?;
    serve_config.demo = true;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("rollway-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the demo directory {}", dir.display()))?;
    let db_file = dir.join("demo.db");
    for stale in [
        db_file.clone(),
        dir.join("demo.db.key"),
        dir.join("kubeconfig"),
    ] {
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::anyhow!("removing {}: {e}", stale.display()).into());
            }
        }
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("demo.db{suffix}")));
    }

    let sim = Sim::start(
        SimConfig {
            tick: Duration::from_millis(50),
            ready_delay: Duration::from_millis(400),
            log_interval: Duration::from_millis(500),
        },
        "127.0.0.1:0".parse().expect("an address"),
    )
    .await?;
    sim.sim.install_kruise();
    for (_, _, services) in TEAMS {
        for service in services {
            for namespace in ["staging", "prod"] {
                sim.sim.create_deployment(
                    namespace,
                    service,
                    "app",
                    &format!("{REGISTRY}/{service}:{}", TAGS[TAGS.len() - 1]),
                    3,
                    60,
                );
            }
        }
    }
    let projects = TEAMS
        .iter()
        .flat_map(|(team, _, services)| services.iter().map(move |s| format!("{team}/{s}")))
        .enumerate()
        .map(|(i, path)| DemoProject {
            id: 101 + i as u64,
            path,
            tags: TAGS.iter().map(|t| t.to_string()).collect(),
        })
        .collect();
    let gitlab = DemoGitlab::start(GITLAB_TOKEN, projects).await?;

    let db_config = DatabaseConfig::from_url(&format!("sqlite://{}", db_file.display()))?;
    let key = load_secret_key(None, db_config.sqlite_file.as_deref()).map_err(Failure::Config)?;
    let db = super::open_db(&db_config, &key).await?;
    let logins = seed(&db, &key, &sim.url(), &sim.kubeconfig(), &gitlab.url).await?;
    let kubeconfig = dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, &sim.kubeconfig())
        .with_context(|| format!("writing {}", kubeconfig.display()))?;

    let state = AppState::new(db, serve_config, &key).await?;
    let url = format!("http://{}", state.config.listen);
    println!(
        "Rollway demo (ready in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    if state.config.listen.port() != 0 {
        println!("  open      {url}");
    }
    for (name, password, what) in &logins {
        println!("  {name:<9} {password}   {what}");
    }
    println!(
        "  kubectl   --kubeconfig {} get deployments -A",
        kubeconfig.display()
    );
    println!("  data in   {}", dir.display());
    println!("Tour:");
    println!(
        "  1. As engineer, file payments/checkout v1.2.0 (Work orders → File), then as owner approve it."
    );
    println!(
        "  2. Deploy staging, then prod: a canary whose error-ratio gate is measured at each step; approve the steps."
    );
    println!("  3. File v1.3.0-bad: its gate fails on staging and the stage rolls back by itself.");
    server::serve(state).await?;
    sim.shutdown().await;
    Ok(())
}

/// Seeds the tree, the people, GitLab, the clusters, the apps and the
/// release items; the logins made (name, password, what they may do).
async fn seed(
    db: &Db,
    key: &crate::secret::SecretKey,
    sim_url: &str,
    kubeconfig: &str,
    gitlab_url: &str,
) -> Result<Vec<(&'static str, String, &'static str)>, Failure> {
    let who = AuditActor::cli();
    let sealer = key.sealer();
    let mut logins = Vec::new();
    for (name, display, admin, what) in [
        ("admin", "Ada Admin", true, "administers everything"),
        (
            "owner",
            "Olivia Owner",
            false,
            "owns both teams: approves, signs off",
        ),
        (
            "engineer",
            "Eric Engineer",
            false,
            "files and deploys in both teams",
        ),
    ] {
        let secret = password::generate();
        let hash = password::hash_blocking(secret.clone()).await?;
        let mut tx = db.begin_write().await.context("opening a transaction")?;
        accounts::insert(
            &mut tx,
            &NewAccount {
                kind: AccountKind::User,
                name,
                display_name: display,
                description: "rollway demo",
                password_hash: Some(&hash),
                is_admin: admin,
            },
            &who,
        )
        .await?;
        tx.commit().await.context("creating the demo users")?;
        logins.push((name, secret, what));
    }
    GitlabClient::save_settings(
        db,
        &sealer,
        gitlab_url,
        Some(&Secret::new(GITLAB_TOKEN.to_string())),
        &who,
    )
    .await?;
    let mut clusters = Vec::new();
    for (name, environment) in [
        ("staging", Environment::Staging),
        ("prod", Environment::Prod),
    ] {
        let connection = Connection::Kubeconfig {
            yaml: Secret::new(kubeconfig.to_string()),
            context: None,
        };
        let cluster =
            db::clusters::create(db, &sealer, name, environment, &connection, &who).await?;
        db::clusters::set_prometheus(
            db,
            &sealer,
            cluster.id,
            Some((&format!("{sim_url}/sim/prometheus"), TokenChange::Clear)),
            &who,
        )
        .await?;
        clusters.push(cluster);
    }
    for (team, title, services) in TEAMS {
        let team_node = db::tree::create(db, None, team, title, &who).await?;
        for role_holder in [("owner", Role::Owner), ("engineer", Role::Engineer)] {
            db::tree::put_member(db, team_node.id, role_holder.0, role_holder.1, &who).await?;
        }
        for service in services {
            let node = db::tree::create(db, Some(team_node.id), service, service, &who).await?;
            let mut stages = Vec::new();
            for cluster in &clusters {
                let app = db::apps::create(
                    db,
                    &AppFields {
                        name: format!("{service}-{}", cluster.name),
                        cluster_id: cluster.id,
                        namespace: cluster.name.clone(),
                        deployment: service.to_string(),
                        container: "app".into(),
                        service: None,
                        ingress: None,
                        node_id: node.id,
                    },
                    &who,
                )
                .await?;
                let prod = cluster.name == "prod";
                stages.push(StageSpec {
                    name: cluster.name.clone(),
                    app_id: app.id,
                    strategy: if prod {
                        Strategy::Canary
                    } else {
                        Strategy::Rolling
                    },
                    canary: prod.then(|| Canary {
                        steps: vec![step(1, None), step(2, Some(5)), step(3, Some(0))],
                        header_match: None,
                    }),
                    deadline_minutes: Some(5),
                    verify: Some(VerifyPlan {
                        gates: vec![error_gate()],
                        soak_seconds: prod.then_some(10),
                        sign_off: prod,
                        ..VerifyPlan::default()
                    }),
                });
            }
            db::release_items::create(
                db,
                &ItemFields {
                    node_id: node.id,
                    name: service.to_string(),
                    gitlab_project: format!("{team}/{service}"),
                    image_repository: format!("{REGISTRY}/{service}"),
                    required_approvals: 1,
                    auto_rollback: true,
                    refuse_zero_replicas: false,
                    stages,
                },
                &who,
            )
            .await?;
        }
    }
    Ok(logins)
}

/// A canary step of `replicas` pods, pausing for an owner (`None`) or
/// `seconds`.
fn step(replicas: u32, seconds: Option<u32>) -> CanaryStep {
    CanaryStep {
        weight: None,
        replicas: Some(replicas),
        pause_seconds: seconds,
    }
}
