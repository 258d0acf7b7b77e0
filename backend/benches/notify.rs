//! Benchmark of notifications: 1,000 events fanned out to 3 destinations.
//!
//! Starts the real `rollway` binary on a fresh database, seeds N approved
//! work orders under `/bench` (N = `BENCH_EVENTS`, default 1000), sets
//! three signed-webhook destinations on `/bench` pointing at receivers in
//! this process, and stops the line at `/bench`: one `line_stopped` event
//! per open order, written in one transaction with a delivery per
//! destination. One receiver answers 503 to the first attempt at every
//! tenth message, so retries are part of the run (schedule: at once, 1 s,
//! 2 s). Measures the time until every delivery is taken, checks that no
//! receiver got a message twice (after a 2xx) and every one got all N,
//! and reads the server's peak RSS and CPU time.
//!
//! `cargo bench --bench notify` (SQLite in a temp dir), or with
//! `BENCH_DATABASE_URL=postgres://…` (an empty database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

mod common;
use common::{Batch, Seeded, cpu_time, env_num, rss_mib, seed_orders, start_rollway};

/// What one receiver saw: per `webhook-id`, the attempts and the 2xx
/// answered.
#[derive(Default)]
struct Seen {
    attempts: HashMap<String, u32>,
    taken: HashMap<String, u32>,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    /// Answer 503 to the first attempt at every tenth message.
    flaky: bool,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut seen = r.seen.lock().unwrap();
    let attempt = {
        let n = seen.attempts.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let tenth = id.bytes().map(u32::from).sum::<u32>() % 10 == 0;
    if r.flaky && tenth && attempt == 1 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    *seen.taken.entry(id).or_default() += 1;
    StatusCode::NO_CONTENT
}

async fn start_receiver(flaky: bool) -> (Receiver, String) {
    let receiver = Receiver {
        seen: Arc::default(),
        flaky,
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, url)
}

#[tokio::main]
async fn main() {
    let events = env_num("BENCH_EVENTS", 1000);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let server = start_rollway(
        &url,
        dir.path(),
        &[
            "--webhook-allow-local-network",
            "--webhook-retry-seconds",
            "0,1,2",
        ],
    );
    let pid = server.child.id();
    let Seeded { client, token, .. } = seed_orders(
        &server,
        &url,
        dir.path(),
        // No deploy happens: the cluster is never asked.
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
            .into(),
        Batch {
            count: events,
            namespaces: 10,
            image: "registry.example.com/bench/svc",
            strategy: "rolling",
            canary_json: "NULL",
        },
    )
    .await;
    let api = |path: String| {
        client
            .post(format!("{}{path}", server.base))
            .bearer_auth(&token)
    };
    let nodes: serde_json::Value = client
        .get(format!("{}/api/v1/nodes", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bench = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["path"] == "/bench")
        .expect("node /bench")["id"]
        .clone();
    let mut receivers = Vec::new();
    for i in 0..3 {
        let (receiver, hook) = start_receiver(i == 0).await;
        let resp = api(format!("/api/v1/nodes/{bench}/notification-destinations"))
            .json(&serde_json::json!({"name": format!("hook-{i}"), "kind": "webhook", "url": hook}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            201,
            "{}",
            resp.text().await.unwrap()
        );
        receivers.push(receiver);
    }
    let (rss_before, _) = rss_mib(pid);
    let cpu_before = cpu_time(pid);

    let started = Instant::now();
    let resp = api(format!("/api/v1/nodes/{bench}/line-stops"))
        .json(&serde_json::json!({"reason": "bench"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "{}",
        resp.text().await.unwrap()
    );
    let stop_written = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = receivers
            .iter()
            .all(|r| r.seen.lock().unwrap().taken.len() >= events);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every delivery was taken within 300 s: {:?}",
            receivers
                .iter()
                .map(|r| r.seen.lock().unwrap().taken.len())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_taken = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let (rss_now, rss_peak) = rss_mib(pid);
    // Anything sent twice would arrive within a retry step: wait one out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut retried = 0;
    for (i, r) in receivers.iter().enumerate() {
        let seen = r.seen.lock().unwrap();
        assert_eq!(seen.taken.len(), events, "receiver {i}: every event");
        let twice = seen.taken.values().filter(|n| **n > 1).count();
        assert_eq!(twice, 0, "receiver {i}: {twice} messages taken twice");
        retried += seen.attempts.values().filter(|n| **n > 1).count();
    }
    println!(
        "{} ({}): {events} events × 3 destinations",
        if url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "  stop written (events + deliveries): {:.0} ms",
        stop_written.as_secs_f64() * 1000.0
    );
    println!(
        "  all {} deliveries taken: {:.1} s ({retried} after a 503 and a retry 1 s later), none twice",
        events * 3,
        all_taken.as_secs_f64()
    );
    println!(
        "  server RSS: {rss_before:.1} MiB before, {rss_now:.1} MiB after, peak {rss_peak:.1} MiB; CPU {:.2} s",
        cpu.as_secs_f64()
    );
    assert!(rss_peak < 100.0, "peak RSS {rss_peak:.1} MiB ≥ 100 MiB");
}
