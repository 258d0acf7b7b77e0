//! Load benchmark of the work order pages and API, against a bare axum +
//! sqlx baseline on the same database, at several sizes of history.
//!
//! For each size (10k, 100k and 1M work orders by default) it seeds a fresh
//! database (1k release items on 100 team nodes; a stage run, two timeline
//! events and some approvals per order; half the items with an order
//! waiting for approval), starts the real `rollway` binary and the baseline
//! server (`baseline.rs`) as processes of their own, logs in through the
//! login form, and measures latency percentiles at concurrency 16 for the
//! pages and the API — as an owner of the whole tree, and, for the read
//! scope, as an engineer of one team (1 % of the orders visible), a viewer
//! of half the teams (50 %) and a viewer of a node without orders. It
//! prints, per size, every row, Rollway's share of the baseline's req/s,
//! the server's RSS (as it starts listening, idle once its start-up work
//! is over, and after the rows) and CPU per request; at the
//! end, the p99 of every row at every size.
//!
//! `cargo bench --bench work_orders` (SQLite in a temp dir), or with
//! `BENCH_DATABASE_URL=postgres://…/postgres`: a PostgreSQL server where
//! the benchmark may create and drop the databases `rollway_bench_<size>`.
//! `BENCH_SIZES` (comma-separated order counts), `BENCH_ITEMS` and
//! `BENCH_REQUESTS` (per row, every size) scale it;
//! `BENCH_ROWS` (comma-separated parts of row names) picks rows;
//! `BENCH_KEEP=<dir>` keeps the databases (the SQLite files in that
//! directory; the PostgreSQL ones are not dropped) for a closer look;
//! `BENCH_CHURN_MS=<n>` moves the board version every n ms while the rows
//! run, as changes to orders do, so cached reads keep going out of date
//! (without it, the bench changes nothing and every repeated read is a
//! hit).

mod baseline;
#[path = "../common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollway::auth::password;
use rollway::config::{DatabaseConfig, DbKind};
use rollway::db::audit::AuditActor;
use rollway::db::{Db, now_ms, tokens};
use rollway::secret::SecretKey;
use sqlx::{Connection, Executor};

use common::{
    Server, cpu_time, env_num, insert_rows, ms, percentile, rss_mib, settled_rss_mib, start,
    start_rollway,
};

/// The allocator Rollway runs with (its `main.rs`), for the baseline and
/// the load generator too, so the comparison is of the work alone.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

async fn exec(db: &Db, sql: &str) {
    sqlx::query(sql)
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", &sql[..sql.len().min(200)]));
}

async fn seed(db: &Db, orders: usize, items: usize) -> (i64, usize) {
    let now = now_ms();
    let teams = 100;
    let hash = password::hash("bench-password-1").unwrap();
    exec(db, &format!(
        "INSERT INTO accounts (kind, name, display_name, description, password_hash, is_admin, created_at, updated_at) \
         VALUES ('user', 'bencher', 'Bencher', '', '{hash}', 0, {now}, {now}), ('user', 'filer', 'Filer', '', '{hash}', 0, {now}, {now})"
    )).await;
    exec(db, &format!("INSERT INTO nodes (parent_id, name, title, path, created_at, updated_at) VALUES (NULL, 'bench', 'Bench', '/bench', {now}, {now})")).await;
    insert_rows(
        db,
        "INSERT INTO nodes (parent_id, name, title, path, created_at, updated_at)",
        (0..teams).map(|t| format!("(1, 'team-{t}', 'Team {t}', '/bench/team-{t}', {now}, {now})")),
    )
    .await;
    // bencher owns /bench (approves everything below it); filer is engineer.
    exec(db, &format!("INSERT INTO node_members (node_id, account_id, role, created_at) VALUES (1, 1, 'owner', {now}), (1, 2, 'engineer', {now})")).await;
    // teamer is engineer of one team; newcomer views a node without orders.
    exec(db, &format!(
        "INSERT INTO accounts (kind, name, display_name, description, password_hash, is_admin, created_at, updated_at) \
         VALUES ('user', 'teamer', 'Teamer', '', '{hash}', 0, {now}, {now}), ('user', 'newcomer', 'Newcomer', '', '{hash}', 0, {now}, {now}), \
         ('user', 'halfer', 'Halfer', '', '{hash}', 0, {now}, {now})"
    )).await;
    exec(db, &format!("INSERT INTO nodes (parent_id, name, title, path, created_at, updated_at) VALUES (1, 'quiet', 'Quiet', '/bench/quiet', {now}, {now})")).await;
    exec(db, &format!(
        "INSERT INTO node_members (node_id, account_id, role, created_at) VALUES (9, 3, 'engineer', {now}), ({}, 4, 'viewer', {now})",
        teams + 2
    )).await;
    // halfer views half the teams, one grant each.
    insert_rows(
        db,
        "INSERT INTO node_members (node_id, account_id, role, created_at)",
        (0..teams / 2).map(|t| format!("({}, 5, 'viewer', {now})", t + 2)),
    )
    .await;
    exec(db, &format!("INSERT INTO clusters (name, environment, in_cluster, created_at, updated_at) VALUES ('bench', 'prod', 1, {now}, {now})")).await;
    insert_rows(db, "INSERT INTO apps (name, cluster_id, namespace, deployment, container, node_id, created_at, updated_at)",
        (0..teams).map(|t| format!("('app-{t}', 1, 'ns', 'app-{t}', 'app', {}, {now}, {now})", t + 2))).await;
    // Fast-path deployments: ten per app, finished, each with its events.
    insert_rows(db, "INSERT INTO deployments (app_id, lane, target, image, status, message, created_by_id, created_by, created_at, updated_at, finished_at)",
        (0..teams * 10).map(|d| format!("({}, NULL, 'app-{}', 'registry/bench/app-{}:v{d}', 'succeeded', 'ns/app-{} runs it', 2, 'filer', {now}, {now}, {now})",
            d % teams + 1, d % teams, d % teams, d % teams))).await;
    insert_rows(
        db,
        "INSERT INTO deployment_events (deployment_id, at, status, message)",
        (0..teams * 10).flat_map(|d| {
            ["pending", "rolling_out", "succeeded"]
                .map(|s| format!("({}, {now}, '{s}', '')", d + 1))
        }),
    )
    .await;
    insert_rows(db, "INSERT INTO release_items (node_id, name, gitlab_project, image_repository, required_approvals, auto_rollback, created_at, updated_at)",
        (0..items).map(|i| format!("({}, 'item-{i}', 'bench/item-{i}', 'registry/bench/item-{i}', 1, 1, {now}, {now})", i % teams + 2))).await;
    insert_rows(db, "INSERT INTO release_stages (release_item_id, position, name, app_id, strategy, canary_json)",
        (0..items).map(|i| format!("({}, 1, 'prod', {}, 'rolling', NULL)", i + 1, i % teams + 1))).await;
    let per_item = orders / items;
    let states = [
        "succeeded",
        "closed",
        "succeeded",
        "rejected",
        "succeeded",
        "failed",
    ];
    let state_of = |n: usize| {
        let item = n % items;
        let round = n / items;
        // The newest order of half the items is still waiting for approval.
        let newest = round == per_item - 1;
        match (newest, item.is_multiple_of(2)) {
            (true, true) => "pending_approval",
            (true, false) => "succeeded",
            _ if states[n % states.len()] == "failed" => "closed",
            _ => states[n % states.len()],
        }
    };
    let order_rows = (0..orders).map(|n| {
        let item = n % items;
        let round = n / items;
        let state = state_of(n);
        format!(
            "({}, {}, 'v1.{round}.0', 'registry/bench/item-{item}:v1.{round}.0', 'Release {round} of item {item}', '', '{state}', 2, 1, {t}, {t})",
            item + 1, item % teams + 2, t = now - ((orders - n) as i64) * 1000
        )
    });
    insert_rows(db, "INSERT INTO work_orders (release_item_id, node_id, version, image, title, description, state, creator_id, required_approvals, created_at, updated_at)", order_rows).await;
    // PostgreSQL: the stage heads are filled in one statement afterwards,
    // as migration 0012 does; row by row, their trigger rewrites each
    // head once per order of its item in one transaction, which takes
    // most of an hour at 1M.
    let postgres = db.kind == DbKind::Postgres;
    if postgres {
        exec(db, "ALTER TABLE stage_runs DISABLE TRIGGER USER").await;
    }
    insert_rows(db, "INSERT INTO stage_runs (work_order_id, position, name, app_id, strategy, canary_json, status)",
        // A succeeded order's stage ran; the others' never did.
        (0..orders).map(|n| format!("({}, 1, 'prod', {}, 'rolling', NULL, '{}')", n + 1, (n % items) % teams + 1,
            if state_of(n) == "succeeded" { "succeeded" } else { "pending" }))).await;
    if postgres {
        exec(db, "ALTER TABLE stage_runs ENABLE TRIGGER USER").await;
        exec(
            db,
            "INSERT INTO stage_heads (release_item_id, app_id, work_order_id) \
             SELECT w.release_item_id, s.app_id, MAX(w.id) \
             FROM stage_runs s JOIN work_orders w ON w.id = s.work_order_id \
             WHERE s.status <> 'pending' GROUP BY w.release_item_id, s.app_id",
        )
        .await;
    }
    insert_rows(db, "INSERT INTO timeline_events (work_order_id, at, actor_id, actor, kind, message, stage_position)",
        (0..orders).flat_map(|n| [
            format!("({}, {now}, 2, 'filer', 'filed', 'item v1', NULL)", n + 1),
            format!("({}, {now}, 1, 'bencher', 'approved', '', NULL)", n + 1),
        ])).await;
    insert_rows(
        db,
        "INSERT INTO approvals (work_order_id, account_id, decision, comment, at)",
        (0..orders)
            .filter(|n| n % 3 == 0)
            .map(|n| format!("({}, 1, 'approved', '', {now})", n + 1)),
    )
    .await;
    (1, per_item)
}

/// A cookie-keeping client logged in as `user` through the login form.
async fn browser_as(base: &str, user: &str) -> reqwest::Client {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .pool_max_idle_per_host(32)
        .build()
        .unwrap();
    let page = browser
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let token = &page[start..start + page[start..].find('"').unwrap()];
    let login = browser
        .post(format!("{base}/login"))
        .form(&[
            ("csrf_token", token),
            ("username", user),
            ("password", "bench-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert!(login.status().is_success(), "login: {}", login.status());
    browser
}

/// An API client with a fresh token of account `id`.
async fn api_as(db: &Db, id: i64) -> reqwest::Client {
    let (_, secret) = tokens::create(db, id, "bench", None, &AuditActor::system())
        .await
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", secret.expose()).parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(32)
        .build()
        .unwrap()
}

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    rps: f64,
}

/// How many of a row's URLs are read before it is timed.
const WARM_URLS: usize = 50;

async fn measure(
    client: &reqwest::Client,
    urls: Arc<Vec<String>>,
    requests: usize,
    concurrency: usize,
) -> Stats {
    // Warm-up: the first 50 URLs (the rest stay first reads, measured as
    // such), at the row's concurrency so that the server's and the
    // baseline's pools open all their connections and prepare their
    // statements on each before the clock starts, not during the row.
    let warm = urls.len().min(WARM_URLS);
    let warmers: Vec<_> = (0..concurrency)
        .map(|w| {
            let client = client.clone();
            let urls = urls.clone();
            tokio::spawn(async move {
                for j in 0..WARM_URLS.div_ceil(concurrency) {
                    let url = &urls[(w * WARM_URLS.div_ceil(concurrency) + j) % warm];
                    let _ = client.get(url).send().await.unwrap().bytes().await;
                }
            })
        })
        .collect();
    for w in warmers {
        w.await.unwrap();
    }
    let started = Instant::now();
    let per_worker = requests / concurrency;
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let client = client.clone();
            let urls = urls.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_worker);
                for i in 0..per_worker {
                    let url = &urls[(w * per_worker + i) % urls.len()];
                    let t = Instant::now();
                    let resp = client.get(url).send().await.unwrap();
                    assert!(resp.status().is_success(), "{url}: {}", resp.status());
                    let _ = resp.bytes().await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(requests);
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    Stats {
        p50: percentile(&all, 0.50),
        p90: percentile(&all, 0.90),
        p99: percentile(&all, 0.99),
        max: *all.last().unwrap(),
        rps: all.len() as f64 / elapsed.as_secs_f64(),
    }
}

/// Where one size's database lives: a SQLite file, or a PostgreSQL
/// database created for it (and dropped afterwards).
struct Target {
    url: String,
    /// The PostgreSQL server's URL to drop the database from, and its name.
    drop: Option<(String, String)>,
}

async fn fresh_database(dir: &std::path::Path, size: usize) -> Target {
    let Ok(server) = std::env::var("BENCH_DATABASE_URL") else {
        let file = dir.join(format!("bench-{size}.db"));
        return Target {
            url: format!("sqlite://{}", file.display()),
            drop: None,
        };
    };
    let name = format!("rollway_bench_{size}");
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&format!("/{name}"));
    Target {
        url: url.to_string(),
        drop: Some((server, name)),
    }
}

impl Target {
    async fn drop_database(&self) {
        if std::env::var("BENCH_KEEP").is_ok() {
            return;
        }
        if let Some((server, name)) = &self.drop {
            let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
            admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
                .unwrap();
        }
    }
}

/// Rollway's rows compared with the baseline's: (Rollway row, baseline
/// row, the share of the baseline's req/s Rollway must reach).
const RATIOS: [(&str, &str, f64); 3] = [
    (
        "GET /api/v1/work-orders/{id}",
        "baseline: token + primary-key read of one order",
        0.40,
    ),
    (
        "GET /api/v1/work-orders",
        "baseline: token + keyset LIMIT 50",
        0.60,
    ),
    (
        "GET /api/v1/deployments/{id}",
        "baseline: token + primary-key read of one deployment",
        0.40,
    ),
];

/// The row whose answer grows with history: an item's newest succeeded
/// orders, a page of 50, are at most nine at 10k (an item holds ten
/// orders there; the seed makes an even item's orders all succeeded but
/// its newest, an odd item's none but its newest) and a full page of 50
/// from 100k on. Its p99 by size compares answers of different sizes,
/// not the same work on more history; [`LIKE_FOR_LIKE`] is the same query
/// with an answer of the same size at every size, and is the one held to
/// the target.
const ANSWER_GROWS: &str = "GET /api/v1/work-orders?item=…&state=…";

/// [`ANSWER_GROWS`] with `limit=5`: five orders (an even item) or one (an
/// odd item) at every size, lying 1,000 ids apart as the page of 50 does.
const LIKE_FOR_LIKE: &str = "GET /api/v1/work-orders?item=…&state=…&limit=5";

/// What one size measured: each row's p99, the ratios, memory.
struct SizeResult {
    size: usize,
    p99: Vec<(String, Duration)>,
}

/// With `BENCH_CHURN_MS=<n>`: a task moving the board version every n ms
/// (what a change to any order does), until aborted.
async fn churn(url: &str, key: &SecretKey) -> Option<tokio::task::JoinHandle<()>> {
    let every = env_num("BENCH_CHURN_MS", 0);
    if every == 0 {
        return None;
    }
    println!("(the board version moves every {every} ms while the rows run)\n");
    let db = Db::connect(&DatabaseConfig::from_url(url).unwrap(), key.audit_key())
        .await
        .unwrap();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(every as u64));
        loop {
            tick.tick().await;
            exec(
                &db,
                "UPDATE board_state SET version = version + 1 WHERE id = 1",
            )
            .await;
        }
    }))
}

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n.is_multiple_of(1_000) => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

async fn bench_size(
    dir: &std::path::Path,
    orders: usize,
    items: usize,
    requests: usize,
) -> SizeResult {
    let concurrency = 16;
    let target = fresh_database(dir, orders).await;
    let url = target.url.clone();
    let key = SecretKey::new(common::SECRET_KEY.as_bytes());
    let db = Db::connect(&DatabaseConfig::from_url(&url).unwrap(), key.audit_key())
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let t = Instant::now();
    let (bencher, _) = seed(&db, orders, items).await;
    if url.starts_with("postgres") {
        // What autovacuum does soon after a bulk load (statistics, the
        // visibility map) and the checkpoint that writes the load out,
        // done now so they do not run during the rows.
        exec(&db, "VACUUM ANALYZE").await;
        exec(&db, "CHECKPOINT").await;
    }
    eprintln!(
        "seeded {orders} work orders across {items} items in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let api = api_as(&db, bencher).await;
    let team_api = api_as(&db, 3).await;
    let quiet_api = api_as(&db, 4).await;
    let half_api = api_as(&db, 5).await;
    db.pool.close().await;

    let server = start_rollway(&url, dir, &[]);
    let pid = server.child.id();
    let (start_rss, _) = rss_mib(pid);
    let idle_rss = settled_rss_mib(pid).await;
    let mut base_cmd = Command::new(std::env::current_exe().unwrap());
    base_cmd.env(baseline::ENV, &url);
    let baseline: Server = start(base_cmd, baseline::LISTENING);
    let base = server.base.clone();
    let bare = baseline.base.clone();

    let browser = browser_as(&base, "bencher").await;
    let team_browser = browser_as(&base, "teamer").await;

    let ids: Vec<usize> = (0..200).map(|i| (i * 7919) % orders + 1).collect();
    let oldest: Vec<usize> = (1..=200).collect();
    let scenarios: Vec<(&str, &reqwest::Client, Vec<String>)> = vec![
        (
            "work order list page, unfiltered",
            &browser,
            vec![format!("{base}/work-orders")],
        ),
        (
            "work order list page, filtered (state + node)",
            &browser,
            (0..100)
                .map(|t| format!("{base}/work-orders?state=succeeded&node=/bench/team-{t}"))
                .collect(),
        ),
        (
            "work order list page, a filter that matches nothing",
            &browser,
            vec![
                format!("{base}/work-orders?state=in_progress"),
                format!("{base}/work-orders?node=/bench/quiet"),
                format!("{base}/work-orders?creator=bencher"),
            ],
        ),
        (
            "work order list page, the last page",
            &browser,
            vec![format!("{base}/work-orders?before=51")],
        ),
        (
            "work order page",
            &browser,
            ids.iter()
                .map(|id| format!("{base}/work-orders/{id}"))
                .collect(),
        ),
        (
            "work order page, the oldest orders (deep link)",
            &browser,
            oldest
                .iter()
                .map(|id| format!("{base}/work-orders/{id}"))
                .collect(),
        ),
        (
            "My approvals page (awaiting me)",
            &browser,
            vec![format!("{base}/approvals")],
        ),
        (
            "GET /api/v1/work-orders/{id}",
            &api,
            ids.iter()
                .map(|id| format!("{base}/api/v1/work-orders/{id}"))
                .collect(),
        ),
        (
            "baseline: token + primary-key read of one order",
            &api,
            ids.iter()
                .map(|id| format!("{bare}/api/v1/work-orders/{id}"))
                .collect(),
        ),
        (
            "GET /api/v1/deployments/{id}",
            &api,
            (1..=200)
                .map(|id| format!("{base}/api/v1/deployments/{}", id * 5 % 1000 + 1))
                .collect(),
        ),
        (
            "baseline: token + primary-key read of one deployment",
            &api,
            (1..=200)
                .map(|id| format!("{bare}/api/v1/deployments/{}", id * 5 % 1000 + 1))
                .collect(),
        ),
        (
            "GET /api/v1/work-orders",
            &api,
            vec![format!("{base}/api/v1/work-orders")],
        ),
        (
            "baseline: token + keyset LIMIT 50",
            &api,
            vec![format!("{bare}/api/v1/work-orders")],
        ),
        (
            "GET /api/v1/work-orders, the last page",
            &api,
            vec![format!("{base}/api/v1/work-orders?cursor=51")],
        ),
        (
            "GET /api/v1/work-orders?item=…&state=…",
            &api,
            (0..200)
                .map(|i| {
                    format!(
                        "{base}/api/v1/work-orders?item={}&state=succeeded",
                        (i * 5) % items + 1
                    )
                })
                .collect(),
        ),
        (
            LIKE_FOR_LIKE,
            &api,
            (0..200)
                .map(|i| {
                    format!(
                        "{base}/api/v1/work-orders?item={}&state=succeeded&limit=5",
                        (i * 5) % items + 1
                    )
                })
                .collect(),
        ),
        (
            "dashboard (what runs where, 50 items a page)",
            &browser,
            (1..=20).map(|p| format!("{base}/?page={p}")).collect(),
        ),
        (
            "GET /api/v1/release-items/{id}/status",
            &api,
            (0..200)
                .map(|i| format!("{base}/api/v1/release-items/{}/status", (i * 7) % items + 1))
                .collect(),
        ),
        (
            "work order list page, one team's engineer (1 % visible)",
            &team_browser,
            vec![format!("{base}/work-orders")],
        ),
        (
            "GET /api/v1/work-orders, one team's engineer",
            &team_api,
            vec![format!("{base}/api/v1/work-orders")],
        ),
        (
            "GET /api/v1/work-orders, one team's engineer, second page",
            &team_api,
            vec![format!("{base}/api/v1/work-orders?cursor={}", orders / 2)],
        ),
        (
            "GET /api/v1/work-orders, viewer of half the teams",
            &half_api,
            vec![format!("{base}/api/v1/work-orders")],
        ),
        (
            "GET /api/v1/work-orders?state=…, viewer of half the teams",
            &half_api,
            vec![format!("{base}/api/v1/work-orders?state=pending_approval")],
        ),
        (
            "GET /api/v1/work-orders, viewer of a node without orders",
            &quiet_api,
            vec![format!("{base}/api/v1/work-orders")],
        ),
    ];
    println!(
        "\n### {} work orders, {items} items, {} backend, {requests} requests per row at concurrency {concurrency}\n",
        size_label(orders),
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    );
    let churn = churn(&url, &key).await;
    println!("| request | p50 | p90 | p99 | max | req/s |");
    println!("|---|---|---|---|---|---|");
    let cpu_before = cpu_time(pid);
    let mut served = 0usize;
    let mut results: Vec<(String, Stats)> = Vec::new();
    let only: Vec<String> = std::env::var("BENCH_ROWS")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    for (name, client, urls) in scenarios {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        let s = measure(client, Arc::new(urls), requests, concurrency).await;
        if !name.starts_with("baseline") {
            served += requests;
        }
        println!(
            "| {name} | {} | {} | {} | {} | {:.0} |",
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max),
            s.rps
        );
        results.push((name.to_string(), s));
    }
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    if let Some(task) = churn {
        task.abort();
    }
    let (rss, hwm) = rss_mib(pid);
    println!();
    let rps = |name: &str| results.iter().find(|(n, _)| n == name).map(|(_, s)| s.rps);
    for (ours, theirs, target) in RATIOS {
        let (Some(ours_rps), Some(theirs_rps)) = (rps(ours), rps(theirs)) else {
            continue;
        };
        let ratio = ours_rps / theirs_rps;
        println!(
            "- `{ours}`: {:.0} % of the baseline's req/s (target ≥ {:.0} %){}",
            ratio * 100.0,
            target * 100.0,
            if ratio >= target { "" } else { " — MISSED" }
        );
    }
    let slow: Vec<&str> = results
        .iter()
        .filter(|(n, s)| !n.starts_with("baseline") && s.p99 >= Duration::from_millis(10))
        .map(|(n, _)| n.as_str())
        .collect();
    println!(
        "- rows with p99 ≥ 10 ms: {}",
        if slow.is_empty() {
            "none".to_string()
        } else {
            slow.join("; ")
        }
    );
    println!(
        "- server RSS: {start_rss:.1} MiB as it starts listening, {idle_rss:.1} MiB idle once start-up is over, {rss:.1} MiB after the rows (high-water mark {hwm:.1} MiB); CPU {:.3} ms per request",
        cpu.as_secs_f64() * 1000.0 / served as f64
    );
    drop(server);
    drop(baseline);
    target.drop_database().await;
    SizeResult {
        size: orders,
        p99: results.into_iter().map(|(n, s)| (n, s.p99)).collect(),
    }
}

fn main() {
    if let Ok(url) = std::env::var(baseline::ENV) {
        baseline::serve(&url);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SIZES: order counts, comma-separated")
        })
        .collect();
    let items = env_num("BENCH_ITEMS", 1_000);
    let requests = env_num("BENCH_REQUESTS", 4_000);
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var("BENCH_KEEP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| temp.path().to_path_buf());
    let mut results = Vec::new();
    for &size in &sizes {
        results.push(bench_size(&dir, size, items.min(size), requests).await);
    }
    if results.len() < 2 {
        return;
    }
    let (first, last) = (&results[0], &results[results.len() - 1]);
    println!("\n### p99 by size of history\n");
    let sizes: Vec<String> = results.iter().map(|r| size_label(r.size)).collect();
    println!(
        "| request | {} | {} ÷ {} |",
        sizes.join(" | "),
        size_label(last.size),
        size_label(first.size)
    );
    println!("|---|{}---|", "---|".repeat(results.len()));
    for (i, (name, _)) in first.p99.iter().enumerate() {
        let cells: Vec<String> = results.iter().map(|r| ms(r.p99[i].1)).collect();
        let growth = last.p99[i].1.as_secs_f64() / first.p99[i].1.as_secs_f64();
        println!(
            "| {name} | {} | {growth:.2}×{} |",
            cells.join(" | "),
            // The target is Rollway's; the baseline is only a reference.
            if name == ANSWER_GROWS {
                " (the answer grows: see the `limit=5` row)"
            } else if growth > 1.5 && !name.starts_with("baseline") {
                " — MISSED"
            } else {
                ""
            }
        );
    }
}
