//! Fault injection and the request log: what tests switch on through
//! `Sim::faults()`, and the middleware that records every request and
//! answers 500 / 409 / nothing when a rule says so.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::Sim;
use super::api::parse_resource_path;
use super::kinds::Kind;
use super::metrics::Serving;
use super::status::ApiError;

/// Requests kept in the log (the oldest are dropped beyond this).
pub const REQUEST_LOG_LIMIT: usize = 20_000;

/// The largest request body the simulator reads.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?` (empty when there is none).
    pub query: String,
    pub content_type: Option<String>,
    /// The body as text (lossy UTF-8), empty for bodiless requests; a
    /// Secret's body is never kept, only its size.
    pub body: String,
    /// When it arrived.
    pub at: std::time::Instant,
    /// The status answered; 0 while there is no answer (or it hangs).
    pub status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Fail,
    Hang,
    Conflict,
}

#[derive(Debug)]
struct Rule {
    action: Action,
    remaining: usize,
    method: Option<Method>,
    path_contains: String,
}

impl Rule {
    fn matches(&self, method: &Method, path: &str) -> bool {
        let write = matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        (self.action != Action::Conflict || write)
            && self.method.as_ref().is_none_or(|m| m == method)
            && path.contains(&self.path_contains)
    }
}

#[derive(Debug, Default)]
struct Rules {
    never_ready: Vec<String>,
    requests: Vec<Rule>,
    serving: Vec<(String, Serving)>,
}

/// The faults a test can inject. Request filters match the HTTP method
/// (case-insensitive, any when `None`) and a substring of the URL path
/// (without the query).
pub struct Faults {
    rules: Mutex<Rules>,
    never_ready_changed: AtomicBool,
    drop_watches: watch::Sender<u64>,
}

impl Faults {
    pub(crate) fn new() -> Faults {
        Faults {
            rules: Mutex::new(Rules::default()),
            never_ready_changed: AtomicBool::new(false),
            drop_watches: watch::channel(0).0,
        }
    }

    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pods with a container image containing `image_pattern` start but
    /// never become Ready (their readiness probe keeps failing), so a
    /// rollout to that image ends in ProgressDeadlineExceeded.
    pub fn never_ready(&self, image_pattern: &str) {
        self.rules().never_ready.push(image_pattern.to_string());
        self.never_ready_changed.store(true, Ordering::SeqCst);
    }

    /// Lifts every never-ready fault; waiting pods become Ready.
    pub fn clear_never_ready(&self) {
        self.rules().never_ready.clear();
        self.never_ready_changed.store(true, Ordering::SeqCst);
    }

    /// The next `n` matching requests answer 500 InternalError.
    pub fn fail_next(&self, n: usize, method: Option<&str>, path_contains: &str) {
        self.add(Action::Fail, n, method, path_contains);
    }

    /// The next `n` matching requests never answer (until the client gives
    /// up and drops the connection).
    pub fn hang_next(&self, n: usize, method: Option<&str>, path_contains: &str) {
        self.add(Action::Hang, n, method, path_contains);
    }

    /// The next `n` matching writes (POST, PUT, PATCH, DELETE) answer 409
    /// Conflict as if the object had changed meanwhile.
    pub fn conflict_next(&self, n: usize, method: Option<&str>, path_contains: &str) {
        self.add(Action::Conflict, n, method, path_contains);
    }

    /// Ends every open watch stream now, abruptly (the body fails
    /// mid-stream as when a connection drops); clients re-watch.
    pub fn drop_watches(&self) {
        self.drop_watches.send_modify(|generation| *generation += 1);
    }

    /// Removes every pending request rule (never-ready faults stay).
    pub fn clear_requests(&self) {
        self.rules().requests.clear();
    }

    fn add(&self, action: Action, n: usize, method: Option<&str>, path_contains: &str) {
        if n == 0 {
            return;
        }
        let method =
            method.and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok());
        self.rules().requests.push(Rule {
            action,
            remaining: n,
            method,
            path_contains: path_contains.to_string(),
        });
    }

    /// Consumes one use of the first rule matching the request.
    fn take(&self, method: &Method, path: &str) -> Option<Action> {
        let mut rules = self.rules();
        let index = rules
            .requests
            .iter()
            .position(|r| r.matches(method, path))?;
        let rule = &mut rules.requests[index];
        rule.remaining -= 1;
        let action = rule.action;
        if rule.remaining == 0 {
            rules.requests.remove(index);
        }
        Some(action)
    }

    /// Pods with a container image containing `image_pattern` serve their
    /// synthetic requests as `serving` says (the first matching pattern
    /// wins over what the image's tag says; see `sim::metrics`).
    pub fn serve(&self, image_pattern: &str, serving: Serving) {
        self.rules()
            .serving
            .push((image_pattern.to_string(), serving));
    }

    pub(crate) fn serving_profiles(&self) -> Vec<(String, Serving)> {
        self.rules().serving.clone()
    }

    pub(crate) fn never_ready_patterns(&self) -> Vec<String> {
        self.rules().never_ready.clone()
    }

    /// Whether never-ready faults changed since the last call.
    pub(crate) fn take_never_ready_change(&self) -> bool {
        self.never_ready_changed.swap(false, Ordering::SeqCst)
    }

    pub(crate) fn watch_drops(&self) -> watch::Receiver<u64> {
        self.drop_watches.subscribe()
    }
}

/// The request log, bounded by [`REQUEST_LOG_LIMIT`].
#[derive(Default)]
pub(crate) struct RequestLog(Mutex<(u64, VecDeque<(u64, RequestRecord)>)>);

impl RequestLog {
    fn lock(&self) -> MutexGuard<'_, (u64, VecDeque<(u64, RequestRecord)>)> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs a request; answers its number, for [`RequestLog::answered`].
    pub fn push(&self, record: RequestRecord) -> u64 {
        let mut log = self.lock();
        log.0 += 1;
        let seq = log.0;
        if log.1.len() >= REQUEST_LOG_LIMIT {
            log.1.pop_front();
        }
        log.1.push_back((seq, record));
        seq
    }

    /// Notes the status request `seq` was answered with.
    pub fn answered(&self, seq: u64, status: u16) {
        let mut log = self.lock();
        if let Some((_, record)) = log.1.iter_mut().rev().find(|(s, _)| *s == seq) {
            record.status = status;
        }
    }

    pub fn all(&self) -> Vec<RequestRecord> {
        self.lock().1.iter().map(|(_, r)| r.clone()).collect()
    }

    pub fn clear(&self) {
        self.lock().1.clear();
    }
}

/// Middleware: records the request, then applies a matching fault rule or
/// passes the request on.
pub(crate) async fn intercept(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    sim.ensure_controller();
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return ApiError::bad_request(format!("cannot read the body: {e}")).into_response();
        }
    };
    let path = parts.uri.path().to_string();
    let seq = sim.inner.requests.push(RequestRecord {
        at: std::time::Instant::now(),
        status: 0,
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        content_type: parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body: super::core_kinds::loggable_body(&path, &bytes),
    });
    let response = match sim.faults().take(&parts.method, &path) {
        Some(Action::Fail) => {
            ApiError::internal("simulated failure (fault injection)").into_response()
        }
        Some(Action::Hang) => std::future::pending::<Response>().await,
        Some(Action::Conflict) => {
            let (kind, name) = parse_resource_path(&path)
                .map(|t| (t.kind, t.name.unwrap_or_default()))
                .unwrap_or((Kind::Deployment, String::new()));
            ApiError::conflict(kind, &name).into_response()
        }
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    sim.inner.requests.answered(seq, response.status().as_u16());
    response
}
