//! The OpenAPI document tells the whole truth: schemathesis (installed by
//! `scripts/test` into `target/schemathesis`) fuzzes every operation of a
//! live server, as an admin, in all its phases (examples, coverage,
//! fuzzing, stateful), and every answer must be one the document lists —
//! status, content type and body schema — and none a 5xx. Its report is
//! kept in `target/test-artifacts/schemathesis/`.
//!
//! The fuzzer runs as an admin of its own (`fuzzer`), against an
//! organisation with GitLab connected (a fake), clusters (unreachable),
//! apps, a release item and an approved work order, so it reaches past the
//! 404s and into GitLab and Kubernetes calls. Its own account
//! cannot be disabled by itself (409), and its token's id is moved far
//! from every id it generates or creates, so it never revokes the token it
//! runs with; the test checks it is still accepted at the end.
//!
//! `ROLLWAY_FUZZ_SEED` replays (or varies) a run; `ROLLWAY_SCHEMATHESIS`
//! points at another schemathesis executable.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::{Start, TestApp};
use crate::db_test;
use crate::releases::{Release, order_body};

/// The version `scripts/test` installs; the test refuses another, so a
/// run means the same on every machine.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Test cases per operation and phase: enough to try every parameter with
/// odd values, small enough for about two minutes per database on two
/// cores.
const MAX_EXAMPLES: &str = "100";
/// The default seed: the same inputs on every run unless
/// `ROLLWAY_FUZZ_SEED` says otherwise.
const DEFAULT_SEED: &str = "20261202";
/// Far from the small ids the fuzzer favours and from every id the run
/// creates (those count up from the seeded rows).
const FUZZER_TOKEN_ID: i64 = 6_917_529_027_641_081_857;
/// The whole run, generous for a loaded machine; past it the test fails.
const DEADLINE: Duration = Duration::from_secs(8 * 60);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schemathesis() -> PathBuf {
    let exe = std::env::var_os("ROLLWAY_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/schemathesis/bin/schemathesis"));
    let version = Command::new(&exe).arg("--version").output();
    match version {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains(SCHEMATHESIS_VERSION) => exe,
        Ok(out) => panic!(
            "{} is not schemathesis {SCHEMATHESIS_VERSION} ({}): run ./scripts/test, which installs it",
            exe.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Err(e) => panic!(
            "schemathesis is not installed at {} ({e}): run ./scripts/test, which installs it into target/schemathesis",
            exe.display()
        ),
    }
}

db_test!(
    the_api_answers_only_what_its_openapi_document_says,
    |backend| async move {
        let exe = schemathesis();
        let mut start = Start::default();
        // GitLab, Kubernetes and Prometheus calls to whatever the fuzzer
        // points them at fail fast (502), so the run stays bounded.
        start.args.extend(
            [
                "--gitlab-timeout-seconds",
                "1",
                "--kube-timeout-seconds",
                "1",
                "--prometheus-timeout-seconds",
                "1",
            ]
            .map(String::from),
        );
        let app = TestApp::start_with(backend, start).await;
        let release = Release::create(&app, false).await;
        let (s, order) = release
            .org
            .admin
            .post("/api/v1/work-orders", order_body(release.item, "v1.129.0"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{order}");
        // Approved, so a deploy reaches the cluster (unreachable: 502).
        let olivia = app.api(Some(&app.token_for("olivia")));
        let (s, v) = olivia
            .post(
                &format!("/api/v1/work-orders/{}/approve", order["id"]),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["state"], "approved", "{v}");

        let out = app.cli(&["admin", "create-user", "fuzzer", "--admin"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = app.token_for("fuzzer");
        app.db
            .execute(&format!(
                "UPDATE api_tokens SET id = {FUZZER_TOKEN_ID} \
                 WHERE account_id = (SELECT id FROM accounts WHERE name = 'fuzzer')"
            ))
            .await;
        let fuzzer = app.api(Some(&token));
        assert_eq!(fuzzer.get("/api/v1/me").await.0, StatusCode::OK);

        let name = format!("{backend:?}").to_lowercase();
        let artifacts = repo_root().join("target/test-artifacts/schemathesis");
        let report_dir = artifacts.join(&name);
        std::fs::create_dir_all(&report_dir).unwrap();
        let log_path = artifacts.join(format!("{name}.txt"));
        let log = std::fs::File::create(&log_path).unwrap();
        let seed = std::env::var("ROLLWAY_FUZZ_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
        let mut child = Command::new(&exe)
            .arg("--config-file")
            .arg(repo_root().join("tests/integration/schemathesis.toml"))
            .arg("run")
            .arg(app.url("/api/v1/openapi.json"))
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", MAX_EXAMPLES, "--seed", &seed])
            // One worker: CPython 3.11 can fail parsing in several threads
            // at once ("AST constructor recursion depth mismatch").
            .args(["--workers", "1", "--request-timeout", "30", "--no-color"])
            .args(["--generation-database", "none", "--continue-on-failure"])
            .args(["--report", "junit", "--report-dir"])
            .arg(&report_dir)
            .current_dir(&report_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start schemathesis");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("schemathesis") {
                break status;
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "schemathesis took longer than {DEADLINE:?}; its output is in {}",
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let report = std::fs::read_to_string(&log_path).unwrap_or_default();
        let report_tail: String = {
            let lines: Vec<&str> = report.lines().collect();
            lines[lines.len().saturating_sub(400)..].join("\n")
        };
        assert!(
            status.success(),
            "schemathesis found answers the OpenAPI document does not describe \
             (seed {seed}; full report in {}):\n{report_tail}\n--- server\n{}",
            log_path.display(),
            app.output()
        );
        assert!(
            report.contains("Coverage") && report.contains("Stateful"),
            "not every phase ran:\n{report_tail}"
        );
        // The fuzzer never locked itself out.
        assert_eq!(
            fuzzer.get("/api/v1/me").await.0,
            StatusCode::OK,
            "the fuzzer's token was revoked or its account disabled"
        );
        eprintln!(
            "schemathesis on {name}: {:?} (seed {seed})",
            started.elapsed()
        );
    }
);
