//! A fake GitLab: the REST endpoints Rollway uses, with GitLab's JSON shapes
//! and pagination headers (`x-page`, `x-next-page`, `x-total`, `Link`), and
//! the JSON Web Key Set of its CI ID tokens (`/oauth/discovery/keys`, the
//! public halves of the test keys in `tests/fixtures/id_tokens`, which keys
//! chosen by the test). It can be told to answer 401/404/500 or to hang,
//! and logs every request.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub const TOKEN: &str = "glpat-fake-token-0123456789";

/// How the fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Every request gets this status with GitLab's error body.
    Status(u16),
    /// Requests never get an answer.
    Hang,
}

#[derive(Default)]
struct Inner {
    /// id → (path_with_namespace, tags newest first)
    projects: HashMap<u64, (String, Vec<String>)>,
    mode: Option<Mode>,
    requests: Vec<String>,
    /// The fixture keys (`a`, `b`) whose public halves the key set holds.
    signing_keys: Vec<String>,
    /// A body served as the key set instead of the keys.
    raw_key_set: Option<String>,
}

#[derive(Clone)]
pub struct FakeGitlab {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGitlab {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/api/v4/user", get(user))
            .route("/api/v4/projects/{id}", get(project))
            .route("/api/v4/projects/{id}/repository/tags", get(tags))
            .route("/api/v4/projects/{id}/repository/commits", get(commits))
            .route("/oauth/discovery/keys", get(keys))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner }
    }

    /// Adds a project whose tags are given newest first.
    pub fn add_project(&self, id: u64, path: &str, tags_newest_first: &[&str]) {
        self.inner.lock().unwrap().projects.insert(
            id,
            (
                path.to_string(),
                tags_newest_first.iter().map(|t| t.to_string()).collect(),
            ),
        );
    }

    /// Serves these fixture keys (`"a"`, `"b"`: kids `test-key-a`, …) at
    /// `/oauth/discovery/keys`; none at first.
    pub fn serve_signing_keys(&self, keys: &[&str]) {
        self.inner.lock().unwrap().signing_keys = keys.iter().map(|k| k.to_string()).collect();
    }

    /// Serves `body` as the key set (malformed or huge ones).
    pub fn serve_raw_key_set(&self, body: String) {
        self.inner.lock().unwrap().raw_key_set = Some(body);
    }

    /// How many times the key set was fetched.
    pub fn key_set_fetches(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| *r == "GET /oauth/discovery/keys")
            .count()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().unwrap().mode = Some(mode);
    }

    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }
}

fn log(inner: &Arc<Mutex<Inner>>, what: String) {
    inner.lock().unwrap().requests.push(what);
}

/// The mode check every endpoint makes first: token, forced status, hang.
async fn gate(inner: &Arc<Mutex<Inner>>, headers: &HeaderMap) -> Option<Response> {
    let mode = inner.lock().unwrap().mode.unwrap_or(Mode::Normal);
    match mode {
        Mode::Hang => {
            std::future::pending::<()>().await;
            None
        }
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            let message = match code {
                401 => "401 Unauthorized",
                404 => "404 Project Not Found",
                _ => "500 Internal Server Error",
            };
            Some((status, axum::Json(json!({"message": message}))).into_response())
        }
        Mode::Normal => {
            let token = headers.get("private-token").and_then(|v| v.to_str().ok());
            if token != Some(TOKEN) {
                return Some(
                    (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"message": "401 Unauthorized"})),
                    )
                        .into_response(),
                );
            }
            None
        }
    }
}

/// GitLab's JWKS: public, no token needed.
async fn keys(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    log(&inner, "GET /oauth/discovery/keys".into());
    let (mode, served, raw) = {
        let inner = inner.lock().unwrap();
        (
            inner.mode.unwrap_or(Mode::Normal),
            inner.signing_keys.clone(),
            inner.raw_key_set.clone(),
        )
    };
    if let Some(body) = raw {
        return ([("content-type", "application/json")], body).into_response();
    }
    match mode {
        Mode::Hang => std::future::pending::<Response>().await,
        Mode::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Mode::Normal => {
            let keys: Vec<Value> = served
                .iter()
                .map(|k| {
                    let path = format!(
                        "{}/../tests/fixtures/id_tokens/key-{k}.jwk.json",
                        env!("CARGO_MANIFEST_DIR")
                    );
                    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
                })
                .collect();
            axum::Json(json!({ "keys": keys })).into_response()
        }
    }
}

async fn user(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    log(&inner, "GET /user".into());
    if let Some(r) = gate(&inner, &headers).await {
        return r;
    }
    axum::Json(json!({"id": 1, "username": "rollway-bot", "name": "Rollway", "state": "active", "web_url": "http://gitlab/rollway-bot"}))
        .into_response()
}

fn find(inner: &Inner, id: &str) -> Option<(u64, String, Vec<String>)> {
    inner.projects.iter().find_map(|(pid, (path, tags))| {
        (pid.to_string() == id || path == id).then(|| (*pid, path.clone(), tags.clone()))
    })
}

/// GitLab's 404 for a missing `what` ("Project", "Ref").
fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"message": format!("404 {what} Not Found")})),
    )
        .into_response()
}

fn project_json(id: u64, path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({
        "id": id, "name": name, "path": name, "path_with_namespace": path,
        "name_with_namespace": path.replace('/', " / "), "default_branch": "main",
        "web_url": format!("http://gitlab.example/{path}"), "visibility": "private"
    })
}

async fn project(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    log(&inner, format!("GET /projects/{id}"));
    if let Some(r) = gate(&inner, &headers).await {
        return r;
    }
    let found = find(&inner.lock().unwrap(), &id);
    match found {
        Some((pid, path, _)) => axum::Json(project_json(pid, &path)).into_response(),
        None => not_found("Project"),
    }
}

/// The page asked for and its size, as GitLab reads them (20 a page by
/// default, at most 100).
fn paging(q: &HashMap<String, String>) -> (usize, usize) {
    let number = |k: &str, default: usize| q.get(k).and_then(|p| p.parse().ok()).unwrap_or(default);
    (
        number("page", 1).max(1),
        number("per_page", 20).clamp(1, 100),
    )
}

/// The commits each tag added over the one before it, newest first: two
/// per tag, the second made a minute after the first.
pub fn commits_of(tag: &str) -> [String; 2] {
    [format!("Polish {tag}"), format!("Build {tag}")]
}

/// `GET …/repository/commits?ref_name=<from>..<to>`: the commits of the
/// tags after `from` up to `to` ([`commits_of`] each, newest first), paged
/// as GitLab pages.
async fn commits(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (page, per_page) = paging(&q);
    let range = q.get("ref_name").cloned().unwrap_or_default();
    log(
        &inner,
        format!(
            "GET /projects/{id}/repository/commits ref_name={range} page={page} per_page={per_page}"
        ),
    );
    if let Some(r) = gate(&inner, &headers).await {
        return r;
    }
    let Some((pid, path, tags)) = find(&inner.lock().unwrap(), &id) else {
        return not_found("Project");
    };
    let index = |name: &str| tags.iter().position(|t| t == name);
    let Some((from, to)) = range
        .split_once("..")
        .and_then(|(a, b)| Some((index(a)?, index(b)?)))
    else {
        return not_found("Ref");
    };
    // Tags are newest first: `to` is newer when its index is smaller.
    let all: Vec<Value> = (to..from.max(to))
        .flat_map(|i| {
            let tag = &tags[i];
            let minute = tags.len() - i;
            let path = path.clone();
            commits_of(tag).into_iter().enumerate().map(move |(k, title)| {
                let sha = format!("{:08x}{:032x}", 0xc0ffee00 + minute * 2 + k, minute);
                json!({
                    "id": sha, "short_id": &sha[..8], "title": title, "message": title,
                    "author_name": "Dana Developer", "author_email": "dana@example.com",
                    "created_at": format!("2026-11-01T10:{:02}:{:02}.000Z", minute % 60, 30 - k),
                    "web_url": format!("http://gitlab.example/{path}/-/commit/{sha}")
                })
            })
        })
        .collect();
    paged(
        all,
        page,
        per_page,
        &format!(
            "http://gitlab.example/api/v4/projects/{pid}/repository/commits?ref_name={range}&per_page={per_page}"
        ),
    )
}

async fn tags(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (page, per_page) = paging(&q);
    log(
        &inner,
        format!("GET /projects/{id}/repository/tags page={page} per_page={per_page}"),
    );
    if let Some(r) = gate(&inner, &headers).await {
        return r;
    }
    let Some((pid, _, tags)) = find(&inner.lock().unwrap(), &id) else {
        return not_found("Project");
    };
    // Newest first is the stored order; honour an explicit ascending sort.
    let mut ordered = tags.clone();
    if q.get("sort").map(String::as_str) == Some("asc") {
        ordered.reverse();
    }
    let total = ordered.len();
    let all: Vec<Value> = ordered
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // Newer tags get later times.
            let minute = total - i;
            json!({
                "name": name,
                "message": format!("Release {name}"),
                "target": format!("{:040x}", minute),
                "commit": {"id": format!("{:040x}", minute), "short_id": format!("{:08x}", minute), "title": format!("Release {name}"),
                            "created_at": format!("2026-11-01T10:{:02}:00.000Z", minute % 60)},
                "release": null, "protected": false,
                "created_at": format!("2026-11-01T10:{:02}:00.000Z", minute % 60)
            })
        })
        .collect();
    paged(
        all,
        page,
        per_page,
        &format!("http://gitlab.example/api/v4/projects/{pid}/repository/tags?per_page={per_page}"),
    )
}

/// Page `page` of `all`, with GitLab's pagination headers; `base` is the
/// list's URL without its page.
fn paged(all: Vec<Value>, page: usize, per_page: usize, base: &str) -> Response {
    let total = all.len();
    let pages = total.div_ceil(per_page).max(1);
    let body: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = axum::Json(body).into_response();
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        h.insert(k, HeaderValue::from_str(&v).unwrap());
    };
    set(h, "x-page", page.to_string());
    set(h, "x-per-page", per_page.to_string());
    set(h, "x-total", total.to_string());
    set(h, "x-total-pages", pages.to_string());
    let next = if page < pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    set(h, "x-next-page", next);
    set(h, "x-prev-page", prev);
    let mut links = vec![
        format!("<{base}&page=1>; rel=\"first\""),
        format!("<{base}&page={pages}>; rel=\"last\""),
    ];
    if page < pages {
        links.push(format!("<{base}&page={}>; rel=\"next\"", page + 1));
    }
    if page > 1 {
        links.push(format!("<{base}&page={}>; rel=\"prev\"", page - 1));
    }
    set(h, "link", links.join(", "));
    response
}
