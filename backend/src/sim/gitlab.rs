//! A stand-in GitLab for `rollway demo`: the four calls Rollway makes (the
//! token's user, a project, its tags and the commits between two tags),
//! answered from projects set when it starts, behind one access token.
//! Every tag adds two commits over the one before it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// A project: its id, `group/name` path and tags, newest first.
#[derive(Debug, Clone)]
pub struct DemoProject {
    pub id: u64,
    pub path: String,
    pub tags: Vec<String>,
}

struct Projects {
    token: String,
    projects: Vec<DemoProject>,
}

/// The running stand-in.
pub struct DemoGitlab {
    pub url: String,
    pub addr: SocketAddr,
}

impl DemoGitlab {
    /// Serves `projects` on a free loopback port, answering only requests
    /// carrying `token`.
    pub async fn start(token: &str, projects: Vec<DemoProject>) -> anyhow::Result<DemoGitlab> {
        let state = Arc::new(Projects {
            token: token.to_string(),
            projects,
        });
        let app = Router::new()
            .route("/api/v4/user", get(user))
            .route("/api/v4/projects/{id}", get(project))
            .route("/api/v4/projects/{id}/repository/tags", get(tags))
            .route("/api/v4/projects/{id}/repository/commits", get(commits))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(DemoGitlab {
            url: format!("http://{addr}"),
            addr,
        })
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

/// Why a project is not answered: GitLab's status and message.
struct Refusal(StatusCode, &'static str);

impl Refusal {
    fn answer(self) -> Response {
        message(self.0, self.1)
    }
}

/// The project `id` (number or path) when the request carries the token.
fn find<'a>(p: &'a Projects, headers: &HeaderMap, id: &str) -> Result<&'a DemoProject, Refusal> {
    let token = headers.get("private-token").and_then(|v| v.to_str().ok());
    if token != Some(p.token.as_str()) {
        return Err(Refusal(StatusCode::UNAUTHORIZED, "401 Unauthorized"));
    }
    p.projects
        .iter()
        .find(|project| project.id.to_string() == id || project.path == id)
        .ok_or(Refusal(StatusCode::NOT_FOUND, "404 Project Not Found"))
}

async fn user(State(p): State<Arc<Projects>>, headers: HeaderMap) -> Response {
    let token = headers.get("private-token").and_then(|v| v.to_str().ok());
    if token != Some(p.token.as_str()) {
        return message(StatusCode::UNAUTHORIZED, "401 Unauthorized");
    }
    axum::Json(
        json!({"id": 1, "username": "rollway-demo", "name": "Rollway demo", "state": "active",
                      "web_url": "http://gitlab.demo/rollway-demo"}),
    )
    .into_response()
}

async fn project(
    State(p): State<Arc<Projects>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match find(&p, &headers, &id) {
        Ok(project) => {
            let name = project.path.rsplit('/').next().unwrap_or(&project.path);
            axum::Json(json!({
                "id": project.id, "name": name, "path": name, "path_with_namespace": project.path,
                "name_with_namespace": project.path.replace('/', " / "), "default_branch": "main",
                "web_url": format!("http://gitlab.demo/{}", project.path), "visibility": "private"
            }))
            .into_response()
        }
        Err(refusal) => refusal.answer(),
    }
}

/// The page and its size as GitLab reads them (20 by default, 100 at most).
fn page_of(q: &HashMap<String, String>) -> (usize, usize) {
    let number = |k: &str, default: usize| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default);
    (
        number("page", 1).max(1),
        number("per_page", 20).clamp(1, 100),
    )
}

/// Minutes since the first tag: newer tags are later.
fn time(minute: usize, second: usize) -> String {
    format!(
        "2026-11-01T{:02}:{:02}:{:02}.000Z",
        9 + minute / 60,
        minute % 60,
        second
    )
}

async fn tags(
    State(p): State<Arc<Projects>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let project = match find(&p, &headers, &id) {
        Ok(project) => project,
        Err(refusal) => return refusal.answer(),
    };
    let mut names = project.tags.clone();
    if q.get("sort").map(String::as_str) == Some("asc") {
        names.reverse();
    }
    let total = names.len();
    let all = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let minute = total - i;
            let sha = format!("{minute:040x}");
            json!({
                "name": name, "message": format!("Release {name}"), "target": sha,
                "commit": {"id": sha, "short_id": &sha[..8], "title": format!("Release {name}"),
                           "created_at": time(minute, 0)},
                "release": null, "protected": false, "created_at": time(minute, 0)
            })
        })
        .collect();
    paged(all, &q)
}

async fn commits(
    State(p): State<Arc<Projects>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let project = match find(&p, &headers, &id) {
        Ok(project) => project,
        Err(refusal) => return refusal.answer(),
    };
    let range = q.get("ref_name").cloned().unwrap_or_default();
    let index = |name: &str| project.tags.iter().position(|t| t == name);
    let Some((from, to)) = range
        .split_once("..")
        .and_then(|(a, b)| Some((index(a)?, index(b)?)))
    else {
        return message(StatusCode::NOT_FOUND, "404 Ref Not Found");
    };
    // Tags are newest first: the commits of `to` and the tags between.
    let total = project.tags.len();
    let all = (to..from.max(to))
        .flat_map(|i| {
            let tag = project.tags[i].clone();
            let minute = total - i;
            let path = project.path.clone();
            [format!("Polish {tag}"), format!("Build {tag}")]
                .into_iter()
                .enumerate()
                .map(move |(k, title)| {
                    let sha = format!("{:08x}{:032x}", 0xdec0_0000 + minute * 2 + k, minute);
                    json!({
                        "id": sha, "short_id": &sha[..8], "title": title, "message": title,
                        "author_name": "Dana Developer", "author_email": "dana@example.com",
                        "created_at": time(minute, 30 - k),
                        "web_url": format!("http://gitlab.demo/{path}/-/commit/{sha}")
                    })
                })
        })
        .collect();
    paged(all, &q)
}

/// The page `q` asks for of `all`, with GitLab's paging headers.
fn paged(all: Vec<Value>, q: &HashMap<String, String>) -> Response {
    let (page, per_page) = page_of(q);
    let total = all.len();
    let pages = total.div_ceil(per_page).max(1);
    let body: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-page", page.to_string()),
        ("x-per-page", per_page.to_string()),
        ("x-total", total.to_string()),
        ("x-total-pages", pages.to_string()),
        (
            "x-next-page",
            if page < pages {
                (page + 1).to_string()
            } else {
                String::new()
            },
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}
