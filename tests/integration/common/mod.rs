//! The test harness: starts the real `rollway` binary on a random port
//! against a fresh database (a SQLite file in a temp dir, or a new
//! PostgreSQL database), and talks to it over HTTP like a user would.

#![allow(dead_code)]

pub mod kubectl;
pub mod prometheus;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, redirect};
use serde_json::Value;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const SECRET_KEY: &str = "test-secret-key-0123456789abcdef0123456789";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `db_test!(name, |backend| async move { … })`
/// makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! db_test {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                ($body)($crate::common::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                ($body)($crate::common::Backend::Postgres).await
            }
        }
    };
}

fn pg_admin_url() -> String {
    std::env::var("ROLLWAY_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn pg_url_for(database: &str) -> String {
    let admin = pg_admin_url();
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => format!("{admin}/{database}"),
    }
}

async fn pg_exec(sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for the postgres tests ({}): {e}. Run ./scripts/test, which starts it.",
                pg_admin_url()
            )
        });
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A fresh, empty database that is dropped with the value.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("rollway.db").display());
                Self {
                    backend,
                    url,
                    dir,
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!(
                    "rollway_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    rand_suffix()
                );
                pg_exec(&format!("CREATE DATABASE {name}")).await;
                Self {
                    backend,
                    url: pg_url_for(&name),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// The same database for a second server: dropping it drops nothing
    /// (the original keeps ownership).
    pub fn shared(&self) -> TestDb {
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
            pg_name: None,
        }
    }

    /// A directory that lives as long as the database.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Runs SQL against the database directly (to arrange what the API
    /// cannot, such as a token that expired yesterday).
    pub async fn execute(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.url)
            .await
            .expect("connect to the test database");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }

    /// The first column of the first row of a query, as text.
    pub async fn query_text(&self, sql: &str) -> Option<String> {
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.url)
            .await
            .expect("connect to the test database");
        sqlx::query_scalar::<_, String>(sql)
            .fetch_optional(&mut conn)
            .await
            .expect(sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside async; use a private runtime on a thread.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(pg_exec(&format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )));
                }
            })
            .join();
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % 1_000_000
}

/// Options for starting a server.
pub struct Start {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub admin_password: Option<String>,
}

impl Default for Start {
    fn default() -> Self {
        Self {
            // Tests log in many times from one address; the rate-limit
            // tests set their own, low limits.
            args: [
                "--login-attempts-per-user",
                "1000",
                "--login-attempts-per-ip",
                "1000",
            ]
            .map(String::from)
            .to_vec(),
            env: Vec::new(),
            admin_password: Some(ADMIN_PASSWORD.into()),
        }
    }
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    process: ServerProcess,
    output: Arc<Mutex<String>>,
}

/// The server process; killed when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rollway")
}

fn pump(
    reader: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    tx: Option<std::sync::mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if let Some(tx) = &tx {
                let _ = tx.send(line.clone());
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, Start::default()).await
    }

    pub async fn start_with(backend: Backend, options: Start) -> Self {
        let db = TestDb::new(backend).await;
        Self::start_on(db, options)
    }

    /// Starts a server on an existing database.
    pub fn start_on(db: TestDb, options: Start) -> Self {
        let mut cmd = Command::new(bin());
        // A random port unless the test chose one.
        let listen: &[&str] = if options.args.iter().any(|a| a == "--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        cmd.arg("--database-url")
            .arg(&db.url)
            .arg("serve")
            .args(listen)
            .args(&options.args)
            .env_remove("ROLLWAY_ADMIN_PASSWORD")
            .env("ROLLWAY_SECRET_KEY", SECRET_KEY)
            .env("ROLLWAY_LOG", "info,tower_http=debug")
            .current_dir(db.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &options.admin_password {
            cmd.env("ROLLWAY_ADMIN_PASSWORD", p);
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start rollway");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        pump(
            child.stdout.take().expect("stdout"),
            output.clone(),
            Some(tx),
        );
        pump(child.stderr.take().expect("stderr"), output.clone(), None);
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("Rollway listening on ") {
                        break addr.trim().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "the server did not start; its output:\n{}",
                        output.lock().map(|s| s.clone()).unwrap_or_default()
                    );
                }
            }
        };
        Self {
            base,
            db,
            process: ServerProcess(child),
            output,
        }
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Runs `rollway <args>` against the same database.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--database-url")
            .arg(&self.db.url)
            .args(args)
            .env("ROLLWAY_SECRET_KEY", SECRET_KEY)
            .current_dir(self.db.dir())
            .output()
            .expect("run rollway")
    }

    /// A fresh token for an account, made with the CLI.
    pub fn token_for(&self, account: &str) -> String {
        let out = self.cli(&["admin", "create-token", account, "--name", "test"]);
        assert!(
            out.status.success(),
            "create-token {account}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn admin_token(&self) -> String {
        self.token_for("admin")
    }

    pub fn api(&self, token: Option<&str>) -> Api {
        Api {
            base: self.base.clone(),
            token: token.map(str::to_string),
            client: reqwest::Client::new(),
        }
    }

    /// A browser-like client (cookies kept, redirects not followed).
    pub fn browser(&self) -> Browser {
        Browser::at(&self.base)
    }

    /// A browser logged in as `user`.
    pub async fn browser_as(&self, user: &str, password: &str) -> Browser {
        let b = self.browser();
        let (status, _) = b.login(user, password).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "login as {user}");
        b
    }

    /// Stops the server (SIGKILL) and hands back its database.
    pub fn stop(self) -> TestDb {
        let TestApp { db, process, .. } = self;
        drop(process);
        db
    }
}

/// A JSON API client with an optional bearer token.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Api {
    /// A client of the API of a server at `base` (`http://host:port`).
    pub fn at(base: &str, token: Option<&str>) -> Api {
        Api {
            base: base.to_string(),
            token: token.map(str::to_string),
            client: reqwest::Client::new(),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }
    /// Sends a request shaped by `build` (headers, body) with the token;
    /// the whole response.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        build(req).send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, None).await
    }
    /// A raw request, for malformed bodies and wrong content types.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .body(body.to_string());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let json = resp.json().await.unwrap_or(Value::Null);
        (status, json)
    }
}

/// A cookie-keeping client that fills forms like a browser.
pub struct Browser {
    base: String,
    pub client: reqwest::Client,
}

/// Pulls the CSRF token out of a page's first form.
impl Browser {
    /// A browser (cookies kept, redirects not followed) of the server at
    /// `base`.
    pub fn at(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }
}

pub fn csrf_from(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&#43;", "+")
            .replace("&#x2f;", "/")
            .replace("&#x2F;", "/")
            .replace("&#61;", "=")
            .replace("&#x3d;", "=")
            .replace("&amp;", "&"),
    )
}

impl Browser {
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .expect("GET");
        let status = resp.status();
        (status, resp.text().await.unwrap_or_default())
    }

    /// A GET as htmx sends it (the fragment, not the page).
    pub async fn get_htmx(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .client
            .get(format!("{}{}", self.base, path))
            .header("hx-request", "true")
            .send()
            .await
            .expect("GET");
        let status = resp.status();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Where a redirect answer points.
    pub async fn location_of(&self, path: &str) -> Option<String> {
        let resp = self
            .client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .expect("GET");
        resp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Posts a form exactly as given (no CSRF token added).
    pub async fn post_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let resp = self
            .client
            .post(format!("{}{}", self.base, path))
            .form(fields)
            .send()
            .await
            .expect("POST");
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, resp.text().await.unwrap_or_default(), location)
    }

    /// A CSRF token valid for this browser, read from a page it may see.
    pub async fn csrf(&self, page: &str) -> String {
        let (_, html) = self.get(page).await;
        csrf_from(&html).unwrap_or_else(|| panic!("no CSRF token on {page}"))
    }

    /// Posts a form with this browser's CSRF token, like submitting it.
    pub async fn submit(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let token = self.csrf("/account").await;
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Logs in through the login form.
    pub async fn login(&self, user: &str, password: &str) -> (StatusCode, String) {
        let token = self.csrf("/login").await;
        let (status, body, _) = self
            .post_raw(
                "/login",
                &[
                    ("csrf_token", &token),
                    ("username", user),
                    ("password", password),
                ],
            )
            .await;
        (status, body)
    }
}

/// Arranges a small organisation through the API as admin:
/// `/acme` ⊃ `/acme/pay` ⊃ `/acme/pay/api`, plus `/acme/payroll` (a
/// look-alike sibling), and users with a role on `/acme/pay`.
pub struct Org {
    pub admin: Api,
    pub acme: i64,
    pub pay: i64,
    pub pay_api: i64,
    pub payroll: i64,
}

pub const USER_PASSWORD: &str = "user-password-123";

impl Org {
    pub async fn create(app: &TestApp) -> Org {
        let admin = app.api(Some(&app.admin_token()));
        let node = |parent: Option<i64>, name: &'static str| {
            let admin = admin.clone();
            async move {
                let (s, v) = admin
                    .post(
                        "/api/v1/nodes",
                        serde_json::json!({"parent_id": parent, "name": name, "title": name}),
                    )
                    .await;
                assert_eq!(s, StatusCode::CREATED, "create {name}: {v}");
                v["id"].as_i64().expect("id")
            }
        };
        let acme = node(None, "acme").await;
        let pay = node(Some(acme), "pay").await;
        let pay_api = node(Some(pay), "api").await;
        let payroll = node(Some(acme), "payroll").await;
        for (user, role) in [
            ("olivia", "owner"),
            ("eric", "engineer"),
            ("vera", "viewer"),
            ("otto", ""),
        ] {
            let (s, v) = admin
                .post(
                    "/api/v1/users",
                    serde_json::json!({"name": user, "password": USER_PASSWORD}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            let target = if role.is_empty() { payroll } else { pay };
            let role = if role.is_empty() { "owner" } else { role };
            let (s, v) = admin
                .post(
                    &format!("/api/v1/nodes/{target}/members"),
                    serde_json::json!({"account": user, "role": role}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
        }
        Org {
            admin,
            acme,
            pay,
            pay_api,
            payroll,
        }
    }
}

/// Waits for `check` to hold, polling with backoff, up to `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    let mut wait = Duration::from_millis(10);
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(500));
    }
}
