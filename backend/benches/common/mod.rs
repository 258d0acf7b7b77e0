//! What both benchmarks share: the real `rollway` binary started as its own
//! process (so its memory and CPU are its own), its RSS and CPU time read
//! from `/proc`, bulk inserts for seeding, and the environment knobs.

#![allow(dead_code)] // each benchmark uses its own part of this

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rollway::db::Db;

pub const SECRET_KEY: &str = "bench-secret-key-0123456789abcdef0123456789";
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` and waits for the line `<prefix>http://ADDR` on its
/// standard output; the rest of its output is drained.
pub fn start(mut command: Command, prefix: &str) -> Server {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(addr) = line.strip_prefix(prefix) {
            break addr.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

/// The real `rollway serve` on database `url`, on a loopback port, logging
/// warnings only.
pub fn start_rollway(url: &str, dir: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollway"));
    command
        .args(["--database-url", url, "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("ROLLWAY_SECRET_KEY", SECRET_KEY)
        .env("ROLLWAY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("ROLLWAY_LOG", "warn")
        .current_dir(dir);
    // `BENCH_SERVER_ENV="K=V,K2=V2"`: environment for the server alone
    // (allocator settings and the like, for experiments).
    if let Ok(pairs) = std::env::var("BENCH_SERVER_ENV") {
        for pair in pairs.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("BENCH_SERVER_ENV: K=V,…");
            command.env(k, v);
        }
    }
    start(command, "Rollway listening on ")
}

/// Runs a `rollway` command on database `url` and returns its output.
pub fn cli(url: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rollway"))
        .args(["--database-url", url])
        .args(args)
        .env("ROLLWAY_SECRET_KEY", SECRET_KEY)
        .current_dir(dir)
        .output()
        .expect("run rollway");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Resident set size now and at its peak, in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The server's RSS (MiB) once its start-up work is over: when for a
/// second its CPU time has not moved and its RSS has not fallen (at most
/// 15 s after asking), so the statistics run at start is done and what
/// start-up freed has gone back to the system. jemalloc hands freed pages
/// back over the second after they are freed, from a thread of its own
/// whose CPU time seldom reaches a clock tick, so a quiet CPU alone can
/// read the RSS halfway through that.
pub async fn settled_rss_mib(pid: u32) -> f64 {
    let quiet_for = Duration::from_secs(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    // The CPU time and RSS when the quiet second began.
    let mut mark = (cpu_time(pid), rss_mib(pid).0);
    let mut since = std::time::Instant::now();
    while std::time::Instant::now() < deadline && since.elapsed() < quiet_for {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (cpu_time(pid), rss_mib(pid).0);
        // Falling by more than noise (a page or two of the allocator's own
        // book-keeping) means memory is still being handed back.
        if now.0 != mark.0 || now.1 < mark.1 - 0.05 {
            mark = now;
            since = std::time::Instant::now();
        }
    }
    rss_mib(pid).0
}

/// User + system CPU time of a process.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name).
    let hz = 100.0;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz)
}

/// Inserts rows in multi-row statements of 500 inside one transaction.
pub async fn insert_rows(db: &Db, head: &str, rows: impl Iterator<Item = String>) {
    let mut tx = db.begin_write().await.unwrap();
    let mut batch = Vec::with_capacity(500);
    for row in rows {
        batch.push(row);
        if batch.len() == 500 {
            let sql = format!("{head} VALUES {}", batch.join(","));
            sqlx::query(&sql).execute(&mut *tx).await.unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        let sql = format!("{head} VALUES {}", batch.join(","));
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The orders [`seed_orders`] writes.
pub struct Batch<'a> {
    pub count: usize,
    pub namespaces: usize,
    pub image: &'a str,
    pub strategy: &'a str,
    /// SQL text: `NULL` or a quoted plan.
    pub canary_json: &'a str,
}

/// What [`seed_orders`] made: the HTTP client and admin token of the
/// server, a connection to its database, and the id before the first order.
pub struct Seeded {
    pub client: reqwest::Client,
    pub token: String,
    pub db: Db,
    pub base_order: i64,
}

/// Registers the simulated cluster (`kubeconfig`) and a node `/bench`
/// through the API of `server`, then writes straight into the database
/// `count` apps (`svc-N` in namespace `bench-{N % namespaces}`), release
/// items with one stage `prod` of `strategy` (and `canary_json`, SQL text:
/// `NULL` or a quoted plan), and approved orders of `image-N:v2`.
pub async fn seed_orders(
    server: &Server,
    url: &str,
    dir: &Path,
    kubeconfig: String,
    batch: Batch<'_>,
) -> Seeded {
    use rollway::config::DatabaseConfig;
    let Batch {
        count,
        namespaces,
        image,
        strategy,
        canary_json,
    } = batch;
    let token = cli(
        url,
        dir,
        &["admin", "create-token", "admin", "--name", "bench"],
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .unwrap();
    for (path, body) in [
        (
            "/api/v1/clusters",
            serde_json::json!({"name": "sim", "environment": "prod", "kubeconfig": kubeconfig}),
        ),
        (
            "/api/v1/nodes",
            serde_json::json!({"name": "bench", "title": "Bench"}),
        ),
    ] {
        let resp = client
            .post(format!("{}{path}", server.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    let key = rollway::secret::SecretKey::new(SECRET_KEY.as_bytes()).audit_key();
    let db = Db::connect(&DatabaseConfig::from_url(url).unwrap(), key)
        .await
        .unwrap();
    let now = rollway::db::now_ms();
    let scalar = |sql: &'static str| {
        let db = &db;
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db.pool)
                .await
                .unwrap()
        }
    };
    let node = scalar("SELECT id FROM nodes WHERE path = '/bench'").await;
    let cluster = scalar("SELECT id FROM clusters WHERE name = 'sim'").await;
    let base_app = scalar("SELECT COALESCE(MAX(id), 0) FROM apps").await;
    let base_item = scalar("SELECT COALESCE(MAX(id), 0) FROM release_items").await;
    let base_order = scalar("SELECT COALESCE(MAX(id), 0) FROM work_orders").await;
    insert_rows(&db, "INSERT INTO apps (name, cluster_id, namespace, deployment, container, node_id, created_at, updated_at)",
        (0..count).map(|i| format!("('svc-{i}', {cluster}, 'bench-{}', 'svc-{i}', 'app', {node}, {now}, {now})", i % namespaces))).await;
    insert_rows(&db, "INSERT INTO release_items (node_id, name, gitlab_project, image_repository, required_approvals, auto_rollback, created_at, updated_at)",
        (0..count).map(|i| format!("({node}, 'svc-{i}', 'bench/svc-{i}', '{image}-{i}', 1, 1, {now}, {now})"))).await;
    insert_rows(
        &db,
        "INSERT INTO release_stages (release_item_id, position, name, app_id, strategy, canary_json)",
        (0..count as i64).map(|i| {
            format!(
                "({}, 1, 'prod', {}, '{strategy}', {canary_json})",
                base_item + i + 1,
                base_app + i + 1
            )
        }),
    )
    .await;
    insert_rows(&db, "INSERT INTO work_orders (release_item_id, node_id, version, image, title, description, state, creator_id, required_approvals, created_at, updated_at)",
        (0..count as i64).map(|i| format!("({}, {node}, 'v2', '{image}-{i}:v2', 'Ship svc-{i} v2', '', 'approved', 1, 1, {now}, {now})", base_item + i + 1))).await;
    insert_rows(
        &db,
        "INSERT INTO stage_runs (work_order_id, position, name, app_id, strategy, canary_json, status)",
        (0..count as i64).map(|i| {
            format!(
                "({}, 1, 'prod', {}, '{strategy}', {canary_json}, 'pending')",
                base_order + i + 1,
                base_app + i + 1
            )
        }),
    )
    .await;
    Seeded {
        client,
        token,
        db,
        base_order,
    }
}
