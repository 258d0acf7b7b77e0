//! The yardstick: a bare axum server on the same database, with the same
//! pool size and SQLite settings as Rollway's, doing the least SQL for the
//! same answers — a token look-up, then one primary-key read of an order
//! (with the names and the approval count its JSON shows), one keyset
//! `LIMIT 50` page of orders, or one primary-key read of a fast-path
//! deployment (with its app's, cluster's and node's names). Native sqlx pools, no policy, no scope, no
//! audit: what the hardware gives, so Rollway's share of it can be printed.
//!
//! The benchmark runs it as its own process (its binary, with
//! `ROLLWAY_BENCH_BASELINE=<database url>`), as it runs Rollway.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub const ENV: &str = "ROLLWAY_BENCH_BASELINE";
pub const LISTENING: &str = "Baseline listening on ";

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(sqlx::FromRow, Serialize)]
struct Order {
    id: i64,
    release_item_id: i64,
    release_item: String,
    node_id: i64,
    node_path: String,
    version: String,
    image: String,
    title: String,
    description: String,
    state: String,
    creator_id: i64,
    creator: String,
    required_approvals: i64,
    approvals: i64,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow, Serialize)]
struct FastDeployment {
    id: i64,
    app_id: i64,
    app: String,
    cluster: String,
    environment: String,
    namespace: String,
    lane: Option<String>,
    deployment: String,
    image: String,
    status: String,
    message: String,
    replaced_image: Option<String>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    node_path: String,
}

#[derive(sqlx::FromRow)]
struct Caller {
    #[allow(dead_code)] // read as a real handler would, then unused
    account_id: i64,
    disabled_at: Option<i64>,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
}

#[derive(Serialize)]
struct Page {
    items: Vec<Order>,
    next_cursor: Option<i64>,
}

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<i64>,
}

const CALLER: &str = "SELECT t.account_id, a.disabled_at, t.revoked_at, t.expires_at \
    FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = $1";
const ORDER: &str = "SELECT w.id, w.release_item_id, r.name AS release_item, w.node_id, n.path AS node_path, \
    w.version, w.image, w.title, w.description, w.state, w.creator_id, a.name AS creator, w.required_approvals, \
    w.approval_count AS approvals, \
    w.created_at, w.updated_at \
    FROM work_orders w JOIN release_items r ON r.id = w.release_item_id \
    JOIN nodes n ON n.id = w.node_id JOIN accounts a ON a.id = w.creator_id";

const DEPLOYMENT: &str = "SELECT d.id, d.app_id, a.name AS app, c.name AS cluster, c.environment, a.namespace, \
    d.lane, d.target AS deployment, d.image, d.status, d.message, d.replaced_image, d.created_by, d.created_at, \
    d.updated_at, d.finished_at, n.path AS node_path \
    FROM deployments d JOIN apps a ON a.id = d.app_id JOIN clusters c ON c.id = a.cluster_id \
    JOIN nodes n ON n.id = a.node_id WHERE d.id = $1";

/// Runs one query on whichever pool, as `$method` of sqlx's query_as.
macro_rules! on_pool {
    ($pool:expr, $sql:expr, $method:ident, $($bind:expr),*) => {
        match $pool {
            Pool::Sqlite(p) => sqlx::query_as($sql)$(.bind($bind))*.$method(p).await,
            Pool::Postgres(p) => sqlx::query_as($sql)$(.bind($bind))*.$method(p).await,
        }
    };
}

fn failed(e: sqlx::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

async fn caller(pool: &Pool, headers: &HeaderMap) -> Result<(), Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| StatusCode::UNAUTHORIZED.into_response())?;
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let found: Option<Caller> = on_pool!(pool, CALLER, fetch_optional, hash).map_err(failed)?;
    match found {
        Some(c) if c.disabled_at.is_none() && c.revoked_at.is_none() && c.expires_at.is_none() => {
            Ok(())
        }
        _ => Err(StatusCode::UNAUTHORIZED.into_response()),
    }
}

async fn one(State(pool): State<Pool>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(refused) = caller(&pool, &headers).await {
        return refused;
    }
    let sql = format!("{ORDER} WHERE w.id = $1");
    let found: Result<Option<Order>, _> = on_pool!(&pool, &sql, fetch_optional, id);
    match found {
        Ok(Some(order)) => Json(order).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => failed(e),
    }
}

async fn deployment(State(pool): State<Pool>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(refused) = caller(&pool, &headers).await {
        return refused;
    }
    let found: Result<Option<FastDeployment>, _> = on_pool!(&pool, DEPLOYMENT, fetch_optional, id);
    match found {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => failed(e),
    }
}

async fn list(
    State(pool): State<Pool>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(refused) = caller(&pool, &headers).await {
        return refused;
    }
    let sql = format!("{ORDER} WHERE w.id < $1 ORDER BY w.id DESC LIMIT 51");
    let found: Result<Vec<Order>, _> =
        on_pool!(&pool, &sql, fetch_all, q.cursor.unwrap_or(i64::MAX));
    match found {
        Ok(mut items) => {
            let more = items.len() > 50;
            items.truncate(50);
            let next_cursor = more.then(|| items.last().map(|o| o.id)).flatten();
            Json(Page { items, next_cursor }).into_response()
        }
        Err(e) => failed(e),
    }
}

/// Serves until killed; prints [`LISTENING`] and the address first.
pub fn serve(url: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url.parse().unwrap();
            let options = options
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .synchronous(SqliteSynchronous::Normal);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(8)
                    .connect_with(options)
                    .await
                    .unwrap(),
            )
        } else {
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(16)
                    .connect(url)
                    .await
                    .unwrap(),
            )
        };
        let app = axum::Router::new()
            .route("/api/v1/work-orders", get(list))
            .route("/api/v1/work-orders/{id}", get(one))
            .route("/api/v1/deployments/{id}", get(deployment))
            .with_state(pool);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{LISTENING}http://{}", listener.local_addr().unwrap());
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
}
