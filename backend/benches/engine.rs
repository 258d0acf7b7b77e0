//! Benchmark of the deploy engine against the simulated cluster.
//!
//! Starts the real `rollway` binary (so its memory and CPU are its own) on a
//! fresh database and the simulated cluster in this process, seeds N
//! approved work orders (one release item, app and Deployment each), then
//! measures
//! 1. the time from sending `POST …/stages/1/deploy` to the cluster
//!    receiving the image PATCH (sequential deploys, loopback), and the
//!    same for the CI fast path's `POST /api/v1/apps/{id}/deployments` on
//!    a dev cluster;
//! 2. N rollouts in flight at once: all deploys sent, every stage followed
//!    to `succeeded`; the server's peak RSS and its CPU time per rollout.
//!
//! `cargo bench --bench engine` (SQLite in a temp dir), or with
//! `BENCH_DATABASE_URL=postgres://…` (an empty database). `BENCH_ROLLOUTS`
//! (default 1000) and `BENCH_LATENCY_SAMPLES` (default 50) scale it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollway::sim::{Sim, SimConfig};

mod common;
use common::{
    Batch, Seeded, cpu_time, env_num, ms, percentile, rss_mib, seed_orders, start_rollway,
};

const IMAGE: &str = "registry.example.com/bench/svc";

/// Starts stage 1 of `order` through the API (client, base URL, token).
async fn deploy(target: &(reqwest::Client, String, String), order: i64) {
    let (client, base, token) = target;
    let resp = client
        .post(format!("{base}/api/v1/work-orders/{order}/stages/1/deploy"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 202, "{}", resp.text().await.unwrap());
}

#[tokio::main]
async fn main() {
    let rollouts = env_num("BENCH_ROLLOUTS", 1000);
    let samples = env_num("BENCH_LATENCY_SAMPLES", 50);
    let total = rollouts + samples;
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));

    // Pods become ready after 10 s, so every rollout of phase 2 is still
    // in flight when the last deploy is sent.
    let sim = Sim::start(
        SimConfig {
            tick: Duration::from_millis(100),
            ready_delay: Duration::from_secs(10),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let namespaces = 10;
    for i in 0..samples {
        sim.sim.create_deployment(
            "bench-fast",
            &format!("fast-{i}"),
            "app",
            &format!("{IMAGE}-fast-{i}:v1"),
            2,
            600,
        );
    }
    for i in 0..total {
        sim.sim.create_deployment(
            &format!("bench-{}", i % namespaces),
            &format!("svc-{i}"),
            "app",
            &format!("{IMAGE}-{i}:v1"),
            2,
            600,
        );
    }

    // Every job of every phase runs at once: phase 0's fast-path
    // deployments and phase 1's samples are still following their
    // rollouts (pods ready after 10 s) when phase 2 sends its deploys, and
    // a job without a slot waits for one to free up.
    let server = start_rollway(
        &url,
        dir.path(),
        &[
            "--engine-max-jobs",
            &(total + samples).max(1000).to_string(),
        ],
    );
    let pid = server.child.id();
    let Seeded {
        client,
        token,
        db,
        base_order,
    } = seed_orders(
        &server,
        &url,
        dir.path(),
        sim.kubeconfig(),
        Batch {
            count: total,
            namespaces,
            image: IMAGE,
            strategy: "rolling",
            canary_json: "NULL",
        },
    )
    .await;
    let target = Arc::new((client.clone(), server.base.clone(), token.clone()));
    let patched = |sim: &Sim, i: usize| {
        let path = format!(
            "/apis/apps/v1/namespaces/bench-{}/deployments/svc-{i}",
            i % namespaces
        );
        sim.requests()
            .iter()
            .find(|r| r.method == "PATCH" && r.path == path && r.status == 200)
            .map(|r| r.at)
    };

    // Phase 0: the fast path, request → first Kubernetes write, one
    // deploy at a time, to apps on the same cluster registered as dev.
    let fast_apps = fast_path_apps(
        &client,
        &server.base,
        &token,
        &db,
        &sim.kubeconfig(),
        samples,
    )
    .await;
    let mut fast = Vec::new();
    for (i, app) in fast_apps.iter().enumerate() {
        let path = format!("/apis/apps/v1/namespaces/bench-fast/deployments/fast-{i}");
        let sent = Instant::now();
        let resp = client
            .post(format!("{}/api/v1/apps/{app}/deployments", server.base))
            .bearer_auth(&token)
            .json(&serde_json::json!({"image": format!("{IMAGE}-fast-{i}:v2")}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            202,
            "{}",
            resp.text().await.unwrap()
        );
        let at = loop {
            let seen = sim
                .sim
                .requests()
                .iter()
                .find(|r| r.method == "PATCH" && r.path == path && r.status == 200)
                .map(|r| r.at);
            if let Some(at) = seen {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        fast.push(at.saturating_duration_since(sent));
    }
    fast.sort();

    // Phase 1: request → first Kubernetes write, one deploy at a time.
    let mut latencies = Vec::new();
    for i in rollouts..total {
        let sent = Instant::now();
        deploy(&target, base_order + i as i64 + 1).await;
        let at = loop {
            if let Some(at) = patched(&sim.sim, i) {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(at.saturating_duration_since(sent));
    }
    latencies.sort();

    // Phase 2: every rollout in flight at once.
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let orders: Arc<Vec<i64>> =
        Arc::new((0..rollouts as i64).map(|i| base_order + i + 1).collect());
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let orders = orders.clone();
            let target = target.clone();
            tokio::spawn(async move {
                for order in orders.iter().skip(w).step_by(16) {
                    deploy(&target, *order).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let sent_in = started.elapsed();
    let in_flight: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stage_runs WHERE status IN ('deploying', 'verifying')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let mut peak_rss: f64 = 0.0;
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM stage_runs WHERE status = 'succeeded'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        peak_rss = peak_rss.max(rss_mib(pid).0);
        let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stage_runs WHERE status IN ('failed', 'rolled_back', 'rolling_back')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(failed, 0, "no rollout may fail");
        if done as usize >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "rollouts did not finish: {done}/{total}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let (rss_now, rss_hwm) = rss_mib(pid);
    // One template change per Deployment: each went from revision 1 to
    // exactly revision 2 (the request log keeps only the latest requests).
    let double_patched = (0..total)
        .filter(|&i| {
            let d = sim
                .sim
                .deployment(&format!("bench-{}", i % namespaces), &format!("svc-{i}"))
                .unwrap();
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                != Some("2")
        })
        .count();
    // A PATCH refused with 409 (the status moved since the read) is read
    // again and sent again.
    let refused = sim
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == 409)
        .count();

    println!(
        "engine benchmark ({})",
        if url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "deploy request → first Kubernetes write ({} samples): p50 {}  p90 {}  max {}",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(*latencies.last().unwrap())
    );
    println!(
        "fast-path POST /api/v1/apps/{{id}}/deployments → first Kubernetes write ({} samples): p50 {}  p90 {}  p99 {}  max {}",
        fast.len(),
        ms(percentile(&fast, 0.5)),
        ms(percentile(&fast, 0.9)),
        ms(percentile(&fast, 0.99)),
        ms(*fast.last().unwrap())
    );
    println!(
        "{rollouts} rollouts: deploys sent in {:.1} s, {in_flight} in flight after sending, all succeeded after {:.1} s (pods ready after 10 s)",
        sent_in.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "server RSS: {rss_now:.1} MiB at the end, {peak_rss:.1} MiB peak sampled, {rss_hwm:.1} MiB high-water mark"
    );
    println!(
        "server CPU: {:.2} s in all, {:.2} ms per rollout",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / rollouts as f64
    );
    println!(
        "Deployments not at revision 2 (not exactly one template change): {double_patched}; image PATCHes refused with 409 and retried (in the last {} requests logged): {refused}",
        rollway::sim::REQUEST_LOG_LIMIT
    );
}

/// Registers the simulated cluster again as `sim-dev` (environment dev)
/// and `count` apps on it, `fast-N` in namespace `bench-fast`, on node
/// `/bench`: the fast path's targets. Their ids.
async fn fast_path_apps(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    db: &rollway::db::Db,
    kubeconfig: &str,
    count: usize,
) -> Vec<i64> {
    let resp = client
        .post(format!("{base}/api/v1/clusters"))
        .bearer_auth(token)
        .json(
            &serde_json::json!({"name": "sim-dev", "environment": "dev", "kubeconfig": kubeconfig}),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let cluster: i64 = sqlx::query_scalar("SELECT id FROM clusters WHERE name = 'sim-dev'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let node: i64 = sqlx::query_scalar("SELECT id FROM nodes WHERE path = '/bench'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let now = rollway::db::now_ms();
    let base_app: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM apps")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    common::insert_rows(
        db,
        "INSERT INTO apps (name, cluster_id, namespace, deployment, container, node_id, created_at, updated_at)",
        (0..count).map(|i| format!("('fast-{i}', {cluster}, 'bench-fast', 'fast-{i}', 'app', {node}, {now}, {now})")),
    )
    .await;
    (0..count as i64).map(|i| base_app + i + 1).collect()
}
