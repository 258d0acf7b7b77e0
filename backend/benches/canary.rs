//! Benchmark of canary stages paused at once (issue 14).
//!
//! Starts the real `rollway` binary (so its memory and CPU are its own) on a
//! fresh database and the simulated cluster, serving OpenKruise Rollout, in
//! this process; seeds N approved work orders whose stage 1 is a canary of
//! two replica steps, each waiting for an owner (one release item, app and
//! Deployment of 4 replicas each), then measures
//! 1. all N canaries started (deploys sent 16 at a time) and followed until
//!    every stage is `paused` at step 1; the server's RSS while the N
//!    pauses are held and it idles, and its CPU time;
//! 2. the time from sending `POST …/stages/1/approve-step` to the cluster
//!    receiving the status PATCH that lets the Rollout go on (sequential
//!    approvals, loopback), that each approval made exactly one such patch,
//!    and that every stage then pauses at step 2;
//! 3. step 2 approved for all N at once (16 at a time), every stage
//!    followed to `succeeded`.
//!
//! `cargo bench --bench canary` (SQLite in a temp dir), or with
//! `BENCH_DATABASE_URL=postgres://…` (an empty database). `BENCH_CANARIES`
//! (default 200) scales it, `BENCH_IDLE_SECS` (default 15) is how long the
//! server idles with every stage paused, `BENCH_NAMESPACES` (default 10)
//! how many namespaces the Deployments share, `BENCH_APPROVE_GAP_MS`
//! (default 0) a pause after each approval of phase 2 (what an approval
//! costs on a quiet server rather than right after the last one).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollway::db::Db;
use rollway::sim::{RequestRecord, Sim, SimConfig};

mod common;
use common::{
    Batch, Seeded, cpu_time, env_num, ms, percentile, rss_mib, seed_orders, start_rollway,
};

const IMAGE: &str = "registry.example.com/bench/svc";
/// Pods of each Deployment.
const REPLICAS: i32 = 4;
/// The canary plan of every stage: 1 pod, then 2, each paused for an owner.
const PLAN: &str = r#"{"steps":[{"replicas":1},{"replicas":2}]}"#;
/// How long the stages may take to reach a state before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(600);

/// Client, base URL and token of the server.
type Target = (reqwest::Client, String, String);

/// Starts stage 1 of `order` through the API.
async fn deploy(target: &Target, order: i64) {
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

/// Approves step `step` of stage 1 of `order`: lets its canary go on.
async fn approve_step(target: &Target, order: i64, step: u32) {
    let (client, base, token) = target;
    let resp = client
        .post(format!(
            "{base}/api/v1/work-orders/{order}/stages/1/approve-step"
        ))
        .bearer_auth(token)
        .json(&serde_json::json!({ "step": step }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
}

/// Sends `send` for every order, 16 at a time.
async fn all_at_once<F, Fut>(orders: &Arc<Vec<i64>>, target: &Arc<Target>, send: F)
where
    F: Fn(Arc<Target>, i64) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let orders = orders.clone();
            let target = target.clone();
            tokio::spawn(async move {
                for order in orders.iter().skip(w).step_by(16) {
                    send(target.clone(), *order).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

async fn count(db: &Db, sql: &str) -> usize {
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap();
    n as usize
}

/// Waits until `sql` counts `n` stages, sampling the server's RSS; the
/// peak sampled. No stage may fail on the way.
async fn wait_for(db: &Db, pid: u32, sql: &str, n: usize, what: &str) -> f64 {
    let started = Instant::now();
    let mut peak_rss: f64 = 0.0;
    loop {
        peak_rss = peak_rss.max(rss_mib(pid).0);
        let failed = count(
            db,
            "SELECT COUNT(*) FROM stage_runs WHERE status IN ('failed', 'rolled_back', 'rolling_back')",
        )
        .await;
        assert_eq!(failed, 0, "no canary may fail");
        let done = count(db, sql).await;
        if done >= n {
            return peak_rss;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: {done}/{n} after {} s",
            PATIENCE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let canaries = env_num("BENCH_CANARIES", 200);
    let idle_secs = env_num("BENCH_IDLE_SECS", 15) as u64;
    let namespaces = env_num("BENCH_NAMESPACES", 10);
    let gap = Duration::from_millis(env_num("BENCH_APPROVE_GAP_MS", 0) as u64);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));

    // A short tick and pods ready after 200 ms: a canary reaches its first
    // pause within a second or so of its template change, and what is
    // measured is the server, not the simulated pods.
    let sim = Sim::start(
        SimConfig {
            tick: Duration::from_millis(50),
            ready_delay: Duration::from_millis(200),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.sim.install_kruise();
    let location = |i: usize| (format!("bench-{}", i % namespaces), format!("svc-{i}"));
    for i in 0..canaries {
        let (namespace, name) = location(i);
        sim.sim.create_deployment(
            &namespace,
            &name,
            "app",
            &format!("{IMAGE}-{i}:v1"),
            REPLICAS,
            600,
        );
    }

    let server = start_rollway(&url, dir.path(), &[]);
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
            count: canaries,
            namespaces,
            image: IMAGE,
            strategy: "canary",
            canary_json: &format!("'{PLAN}'"),
        },
    )
    .await;
    let order = |i: usize| base_order + i as i64 + 1;

    // Every Deployment up before the first canary.
    let started = Instant::now();
    while !(0..canaries).all(|i| {
        let (namespace, name) = location(i);
        sim.sim
            .deployment(&namespace, &name)
            .and_then(|d| d.status?.ready_replicas)
            == Some(REPLICAS)
    }) {
        assert!(
            started.elapsed() < PATIENCE,
            "the Deployments never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_rss = rss_mib(pid).0;

    let target = Arc::new((client.clone(), server.base.clone(), token.clone()));
    let orders: Arc<Vec<i64>> = Arc::new((0..canaries).map(order).collect());
    // Phase 1: every canary to its first pause, then held while the server
    // idles.
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    all_at_once(&orders, &target, |t, o| async move { deploy(&t, o).await }).await;
    let sent_in = started.elapsed();
    let paused_1 = "SELECT COUNT(*) FROM stage_runs WHERE status = 'paused' AND paused_step = 1";
    let mut peak_rss = wait_for(&db, pid, paused_1, canaries, "paused at step 1").await;
    let to_paused = started.elapsed();
    let cpu_deploy = cpu_time(pid).saturating_sub(cpu_before);
    let cpu_before = cpu_time(pid);
    let idle_from = Instant::now();
    while idle_from.elapsed() < Duration::from_secs(idle_secs) {
        peak_rss = peak_rss.max(rss_mib(pid).0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_idle = cpu_time(pid).saturating_sub(cpu_before);
    let (rss_paused, hwm_paused) = rss_mib(pid);
    let still_paused = count(&db, paused_1).await;

    // Phase 2: one approval at a time, each timed to the status PATCH that
    // reached the cluster. The request log is cleared first, so it holds
    // every request of this phase (checked below).
    sim.sim.clear_requests();
    let status_path = |i: usize| {
        let (namespace, name) = location(i);
        format!("/apis/rollouts.kruise.io/v1beta1/namespaces/{namespace}/rollouts/{name}/status")
    };
    let patched_after = |requests: &[RequestRecord], path: &str, sent: Instant| {
        requests
            .iter()
            .find(|r| r.method == "PATCH" && r.path == path && r.status == 200 && r.at >= sent)
            .map(|r| r.at)
    };
    // The request reads the Rollout before it patches it: the time to that
    // read is the server's own part (token, checks, the approval's
    // transaction), the rest the cluster's round trips.
    let read_after = |requests: &[RequestRecord], path: &str, sent: Instant| {
        let path = path.strip_suffix("/status").unwrap_or(path);
        requests
            .iter()
            .find(|r| r.method == "GET" && r.path == path && r.at >= sent)
            .map(|r| r.at)
    };
    let mut latencies = Vec::with_capacity(canaries);
    let mut to_read = Vec::with_capacity(canaries);
    let mut answers = Vec::with_capacity(canaries);
    let mut left_to_the_job = 0;
    let cpu_before = cpu_time(pid);
    for i in 0..canaries {
        let path = status_path(i);
        let sent = Instant::now();
        approve_step(&target, order(i), 1).await;
        answers.push(sent.elapsed());
        // The request patches the Rollout before it answers; when the
        // cluster did not answer it in time, the stage's job does.
        let requests = sim.sim.requests();
        if let Some(at) = read_after(&requests, &path, sent) {
            to_read.push(at.saturating_duration_since(sent));
        }
        let at = match patched_after(&requests, &path, sent) {
            Some(at) => at,
            None => {
                left_to_the_job += 1;
                loop {
                    if let Some(at) = patched_after(&sim.sim.requests(), &path, sent) {
                        break at;
                    }
                    assert!(
                        sent.elapsed() < PATIENCE,
                        "step 1 of #{} never approved",
                        order(i)
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        latencies.push(at.saturating_duration_since(sent));
        if gap > Duration::ZERO {
            tokio::time::sleep(gap).await;
        }
    }
    let approved_in = latencies.len();
    latencies.sort();
    answers.sort();
    to_read.sort();
    let paused_2 = "SELECT COUNT(*) FROM stage_runs WHERE status = 'paused' AND paused_step = 2";
    let settle = Instant::now();
    let peak_rss_2 = wait_for(&db, pid, paused_2, canaries, "paused at step 2").await;
    let settled_in = settle.elapsed();
    let cpu_approvals = cpu_time(pid).saturating_sub(cpu_before);
    let (_, hwm_approvals) = rss_mib(pid);
    let requests = sim.sim.requests();
    let log_full = requests.len() >= rollway::sim::REQUEST_LOG_LIMIT;
    let mut patches: HashMap<&str, (usize, usize)> = HashMap::new();
    for r in requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/status"))
    {
        let entry = patches.entry(r.path.as_str()).or_default();
        match r.status {
            200 => entry.0 += 1,
            409 => entry.1 += 1,
            _ => {}
        }
    }
    let paths: Vec<String> = (0..canaries).map(status_path).collect();
    let not_one_patch = paths
        .iter()
        .filter(|p| patches.get(p.as_str()).map_or(0, |c| c.0) != 1)
        .count();
    let refused: usize = patches.values().map(|c| c.1).sum();
    let not_at_step_2 = canaries - count(&db, paused_2).await.min(canaries);
    let phase_2_requests = requests.len();

    // Phase 3: step 2 approved for every stage at once; the canaries
    // finish and the Deployments roll on to every pod.
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    all_at_once(&orders, &target, |t, o| async move {
        approve_step(&t, o, 2).await
    })
    .await;
    let approved_all_in = started.elapsed();
    let succeeded = "SELECT COUNT(*) FROM stage_runs WHERE status = 'succeeded'";
    let peak_rss_3 = wait_for(&db, pid, succeeded, canaries, "succeeded").await;
    let finished_in = started.elapsed();
    let cpu_finish = cpu_time(pid).saturating_sub(cpu_before);
    let (rss_end, hwm_end) = rss_mib(pid);
    let not_new_image = (0..canaries)
        .filter(|&i| {
            let (namespace, name) = location(i);
            let d = sim.sim.deployment(&namespace, &name).unwrap();
            let image = d.spec.template.spec.unwrap().containers[0].image.clone();
            image.as_deref() != Some(format!("{IMAGE}-{i}:v2").as_str())
        })
        .count();

    println!(
        "canary benchmark ({}, {canaries} canary stages over {namespaces} namespaces, Deployments of {REPLICAS} pods, steps {PLAN})",
        if url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "phase 1: {canaries} deploys sent in {:.1} s, all paused at step 1 after {:.1} s; server CPU {:.2} s ({:.2} ms per canary)",
        sent_in.as_secs_f64(),
        to_paused.as_secs_f64(),
        cpu_deploy.as_secs_f64(),
        cpu_deploy.as_secs_f64() * 1000.0 / canaries as f64
    );
    println!(
        "all {canaries} paused, idle for {idle_secs} s: server CPU {:.2} s ({:.1} ms/s), still paused at step 1: {still_paused}",
        cpu_idle.as_secs_f64(),
        cpu_idle.as_secs_f64() * 1000.0 / idle_secs as f64
    );
    println!(
        "server RSS: {idle_rss:.1} MiB before the deploys, {peak_rss:.1} MiB peak sampled (deploys and pauses), {rss_paused:.1} MiB with all paused after idling, {hwm_paused:.1} MiB high-water mark"
    );
    println!(
        "phase 2: approve-step → status PATCH at the cluster ({} samples, one at a time): p50 {}  p90 {}  p99 {}  max {}",
        approved_in,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
    println!(
        "         approve-step answered (200): p50 {}  p90 {}  p99 {}  max {}; patches left to the stage's job: {left_to_the_job}",
        ms(percentile(&answers, 0.5)),
        ms(percentile(&answers, 0.9)),
        ms(percentile(&answers, 0.99)),
        ms(*answers.last().unwrap())
    );
    println!(
        "         of it, to the request's read of the Rollout ({} samples): p50 {}  p90 {}  p99 {}  max {}",
        to_read.len(),
        ms(percentile(&to_read, 0.5)),
        ms(percentile(&to_read, 0.9)),
        ms(percentile(&to_read, 0.99)),
        ms(*to_read.last().unwrap())
    );
    println!(
        "         all paused at step 2 {:.1} s after the last approval; server CPU {:.2} s; RSS {peak_rss_2:.1} MiB peak sampled, {hwm_approvals:.1} MiB high-water mark",
        settled_in.as_secs_f64(),
        cpu_approvals.as_secs_f64()
    );
    println!(
        "         Rollouts without exactly one status PATCH (200): {not_one_patch}; status PATCHes refused with 409: {refused}; stages not paused at step 2: {not_at_step_2}; requests logged: {phase_2_requests}{}",
        if log_full {
            format!(
                " — the log is full ({}), so counts may miss requests",
                rollway::sim::REQUEST_LOG_LIMIT
            )
        } else {
            String::new()
        }
    );
    println!(
        "phase 3: step 2 approved for all in {:.1} s (16 at a time), all succeeded after {:.1} s; server CPU {:.2} s; RSS {peak_rss_3:.1} MiB peak sampled, {rss_end:.1} MiB at the end, {hwm_end:.1} MiB high-water mark",
        approved_all_in.as_secs_f64(),
        finished_in.as_secs_f64(),
        cpu_finish.as_secs_f64()
    );
    println!("Deployments not on the new image at the end: {not_new_image}");
}
