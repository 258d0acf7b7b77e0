//! Load benchmark of the work order pages and API on a seeded database.
//!
//! Seeds 100k work orders across 1k release items on 100 team nodes, starts
//! the real router in-process on a loopback port, and measures latency
//! percentiles at concurrency 16 for the list page (unfiltered and
//! filtered), a work order page and `GET /api/v1/work-orders` — as an owner
//! of the whole tree, and, for the read scope, as an engineer of one team
//! (1 % of the orders visible), a viewer of half the teams (50 %) and a
//! viewer of a node without orders (none visible).
//!
//! `cargo bench --bench work_orders` (SQLite in a temp dir), or with
//! `BENCH_DATABASE_URL=postgres://…` against an empty PostgreSQL database.
//! `BENCH_WORK_ORDERS`, `BENCH_ITEMS` and `BENCH_REQUESTS` scale it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollway::app::AppState;
use rollway::auth::password;
use rollway::config::{DatabaseConfig, ServeArgs, ServeConfig};
use rollway::db::audit::AuditActor;
use rollway::db::{Db, now_ms, tokens};
use rollway::secret::SecretKey;
use rollway::server::router;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn exec(db: &Db, sql: &str) {
    sqlx::query(sql)
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", &sql[..sql.len().min(200)]));
}

/// Inserts rows in multi-row statements inside one transaction.
async fn insert_rows(db: &Db, head: &str, rows: impl Iterator<Item = String>) {
    let mut tx = db.begin_write().await.unwrap();
    let mut batch = Vec::with_capacity(500);
    let flush = |batch: &mut Vec<String>| {
        let sql = format!("{head} VALUES {}", batch.join(","));
        batch.clear();
        sql
    };
    for row in rows {
        batch.push(row);
        if batch.len() == 500 {
            let sql = flush(&mut batch);
            sqlx::query(&sql).execute(&mut *tx).await.unwrap();
        }
    }
    if !batch.is_empty() {
        let sql = flush(&mut batch);
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
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
    let order_rows = (0..orders).map(|n| {
        let item = n % items;
        let round = n / items;
        // The newest order of half the items is still waiting for approval.
        let newest = round == per_item - 1;
        let state = match (newest, item.is_multiple_of(2)) {
            (true, true) => "pending_approval",
            (true, false) => "succeeded",
            _ if states[n % states.len()] == "failed" => "closed",
            _ => states[n % states.len()],
        };
        format!(
            "({}, {}, 'v1.{round}.0', 'registry/bench/item-{item}:v1.{round}.0', 'Release {round} of item {item}', '', '{state}', 2, 1, {t}, {t})",
            item + 1, item % teams + 2, t = now - ((orders - n) as i64) * 1000
        )
    });
    insert_rows(db, "INSERT INTO work_orders (release_item_id, node_id, version, image, title, description, state, creator_id, required_approvals, created_at, updated_at)", order_rows).await;
    insert_rows(db, "INSERT INTO stage_runs (work_order_id, position, name, app_id, strategy, canary_json, status)",
        (0..orders).map(|n| format!("({}, 1, 'prod', {}, 'rolling', NULL, 'pending')", n + 1, (n % items) % teams + 1))).await;
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

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    rps: f64,
}

async fn measure(
    client: &reqwest::Client,
    urls: Arc<Vec<String>>,
    requests: usize,
    concurrency: usize,
) -> Stats {
    // Warm-up: caches, prepared statements, pool connections.
    for u in urls.iter().take(50) {
        let _ = client.get(u).send().await.unwrap().bytes().await;
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
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: *all.last().unwrap(),
        rps: all.len() as f64 / elapsed.as_secs_f64(),
    }
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

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let orders = env_num("BENCH_WORK_ORDERS", 100_000);
    let items = env_num("BENCH_ITEMS", 1_000);
    let requests = env_num("BENCH_REQUESTS", 4_000);
    let concurrency = 16;
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let config = DatabaseConfig::from_url(&url).unwrap();
    let db = Db::connect(&config, SecretKey::for_tests().audit_key())
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let t = Instant::now();
    let (bencher, _) = seed(&db, orders, items).await;
    eprintln!(
        "seeded {orders} work orders across {items} items in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let args = ServeArgs {
        listen: "127.0.0.1:0".into(),
        public_url: None,
        trusted_proxies: None,
        trust_forwarded_for: false,
        metrics_listen: None,
        login_attempts_per_user: "100".into(),
        login_attempts_per_ip: "100".into(),
        session_idle_hours: "12".into(),
        gitlab_timeout_seconds: "10".into(),
        kube_timeout_seconds: "10".into(),
        engine_lease_seconds: "15".into(),
        engine_max_jobs: "1000".into(),
    };
    let serve = ServeConfig::from_args(&args).unwrap();
    let state = AppState::new(db.clone(), serve, &SecretKey::for_tests())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state, None);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let base = format!("http://{addr}");

    // A browser session for the pages, a token for the API.
    let browser = browser_as(&base, "bencher").await;
    let api = api_as(&db, bencher).await;
    let team_browser = browser_as(&base, "teamer").await;
    let team_api = api_as(&db, 3).await;
    let quiet_api = api_as(&db, 4).await;
    let half_api = api_as(&db, 5).await;

    let ids: Vec<usize> = (0..200).map(|i| (i * 7919) % orders + 1).collect();
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
            "work order page",
            &browser,
            ids.iter()
                .map(|id| format!("{base}/work-orders/{id}"))
                .collect(),
        ),
        (
            "GET /api/v1/work-orders",
            &api,
            vec![format!("{base}/api/v1/work-orders")],
        ),
        (
            "GET /api/v1/work-orders?item=…&state=…",
            &api,
            (0..200)
                .map(|i| {
                    format!(
                        "{base}/api/v1/work-orders?item={}&state=succeeded",
                        i * 5 + 1
                    )
                })
                .collect(),
        ),
        (
            "My approvals page (awaiting me)",
            &browser,
            vec![format!("{base}/approvals")],
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
        "\n{orders} work orders, {items} items, {} backend, {requests} requests per row at concurrency {concurrency}\n",
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    );
    println!("| request | p50 | p90 | p99 | max | req/s |");
    println!("|---|---|---|---|---|---|");
    for (name, client, urls) in scenarios {
        let s = measure(client, Arc::new(urls), requests, concurrency).await;
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {} | {} | {} | {} | {:.0} |",
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max),
            s.rps
        );
    }
}
