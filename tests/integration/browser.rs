//! Browser journeys: playwright-core driving Debian's chromium against the
//! real server. The scripts live in tests/browser; screenshots go to
//! target/test-artifacts.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{ADMIN_PASSWORD, Backend, TestApp, USER_PASSWORD};
use crate::fake_gitlab::{FakeGitlab, TOKEN};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn run_script(app: &TestApp, script: &str, env: &[(&str, &str)]) {
    let mut all = vec![("ROLLWAY_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    all.extend_from_slice(env);
    run_node(&app.base, script, &all, || app.output()).await;
}

/// Fails unless every screenshot of `shots` was saved.
fn assert_saved(shots: &[&str]) {
    let dir = repo_root().join("target/test-artifacts");
    for shot in shots {
        assert!(dir.join(shot).exists(), "{shot} saved");
    }
}

/// Runs browser script `script` against the server at `base` with `env`;
/// on failure the panic shows `server_output()`.
pub async fn run_node(
    base: &str,
    script: &str,
    env: &[(&str, &str)],
    server_output: impl FnOnce() -> String,
) {
    let root = repo_root();
    let browser_dir = root.join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test (it runs npm ci in tests/browser)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is not installed: run ./scripts/test (it installs it)"
    );
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(browser_dir.join(script))
        .env("ROLLWAY_BASE_URL", base)
        .env("ROLLWAY_ARTIFACTS", &artifacts)
        .current_dir(&browser_dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Off the test's runtime thread, so in-process fakes keep answering.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{}",
        server_output()
    );
}

#[tokio::test]
async fn browser_admin_creates_a_node_and_adds_an_owner() {
    let app = TestApp::start(Backend::Sqlite).await;
    run_script(&app, "admin_tree.mjs", &[]).await;
    // What the browser did is really in the database.
    let api = app.api(Some(&app.admin_token()));
    let (_, nodes) = api.get("/api/v1/nodes").await;
    let payments = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["path"] == "/acme/payments")
        .expect("/acme/payments created");
    let (_, members) = api
        .get(&format!("/api/v1/nodes/{}/members", payments["id"]))
        .await;
    assert_eq!(members[0]["account"], "olivia");
    assert_eq!(members[0]["role"], "owner");
    let shot = repo_root().join("target/test-artifacts/tree-node-with-owner.png");
    assert!(shot.exists(), "screenshot saved");
}

#[tokio::test]
async fn browser_engineer_files_and_owner_approves_in_another_browser() {
    let app = TestApp::start(Backend::Sqlite).await;
    // Users, apps and a release item through the API; GitLab serves tags.
    let release = crate::releases::Release::create(&app, false).await;
    let gitlab = FakeGitlab::start().await;
    gitlab.add_project(
        42,
        crate::releases::PROJECT,
        &["v1.2.0", "v1.1.0", "v1.0.0"],
    );
    let (s, v) = release
        .org
        .admin
        .put(
            "/api/v1/settings/gitlab",
            serde_json::json!({"url": gitlab.url, "token": TOKEN}),
        )
        .await;
    assert!(s.is_success() && v["connected"] == true, "{v}");
    run_script(
        &app,
        "file_and_approve.mjs",
        &[("ROLLWAY_USER_PASSWORD", USER_PASSWORD)],
    )
    .await;
    let (_, list) = release
        .org
        .admin
        .get("/api/v1/work-orders?state=approved")
        .await;
    assert_eq!(list["items"][0]["version"], "v1.2.0");
    assert_eq!(list["items"][0]["title"], "Ship checkout 1.2.0");
}

#[tokio::test]
async fn browser_engineer_deploys_watches_reads_logs_and_rolls_back() {
    let app = TestApp::start_with(Backend::Sqlite, crate::engine::engine_start()).await;
    let rollout = crate::engine::Rollout::create(&app).await;
    let id = rollout.approved_order("v1.1.0").await;
    run_script(
        &app,
        "deploy_and_rollback.mjs",
        &[
            ("ROLLWAY_USER_PASSWORD", USER_PASSWORD),
            ("ROLLWAY_ORDER_ID", &id.to_string()),
        ],
    )
    .await;
    assert_eq!(
        rollout.image("staging"),
        format!("{}:v1.0.0", crate::engine::IMAGE),
        "the rollback really restored the old image"
    );
    assert_saved(&[
        "stage-succeeded-with-pods.png",
        "pod-log.png",
        "stage-rolled-back.png",
    ]);
}

#[tokio::test]
async fn browser_canary_is_approved_step_by_step_from_the_order_page() {
    let app = TestApp::start_with(Backend::Sqlite, crate::engine::engine_start()).await;
    let rollout = crate::engine::Rollout::create_with(&app, crate::engine::sim_config(), 4).await;
    rollout.sim.sim.install_kruise();
    crate::canary::make_canary(
        &rollout,
        serde_json::json!({"header_match": {"name": "x-canary", "value": "yes"},
                           "steps": [{"weight": 50}, {"weight": 100, "pause_seconds": 0}]}),
    )
    .await;
    run_script(
        &app,
        "canary.mjs",
        &[("ROLLWAY_USER_PASSWORD", USER_PASSWORD)],
    )
    .await;
    assert_eq!(
        rollout.image("staging"),
        format!("{}:v1.0.0", crate::engine::IMAGE),
        "the rollback really restored the old image"
    );
    assert_eq!(
        crate::canary::status_patches(&rollout),
        2,
        "one status patch per approval from the page"
    );
    assert_saved(&[
        "canary-paused-step-1.png",
        "canary-paused-step-2.png",
        "canary-succeeded.png",
        "canary-rolled-back.png",
    ]);
}

#[tokio::test]
async fn browser_owner_cancels_a_stuck_stage() {
    let app = TestApp::start_with(Backend::Sqlite, crate::engine::engine_start()).await;
    let rollout = crate::engine::Rollout::create(&app).await;
    // Stuck for ten minutes unless someone steps in.
    crate::engine_safety::slow_deadline(&rollout.sim.sim).await;
    rollout.sim.sim.faults().never_ready(":v1.1.0");
    let id = rollout.approved_order("v1.1.0").await;
    let (s, v) = rollout
        .eric
        .post(
            &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::ACCEPTED, "{v}");
    run_script(
        &app,
        "cancel_stage.mjs",
        &[
            ("ROLLWAY_USER_PASSWORD", USER_PASSWORD),
            ("ROLLWAY_ORDER_ID", &id.to_string()),
        ],
    )
    .await;
    let stage = crate::engine::stage(&rollout.eric, id, 1).await;
    assert_eq!(stage["status"], "failed", "{stage}");
}

/// CI's fast-path deploys on the app's page, and a lane removed there.
#[tokio::test]
async fn browser_an_engineer_reads_cis_deploys_on_the_app_page_and_removes_a_lane() {
    let app = TestApp::start_with(Backend::Sqlite, crate::engine::engine_start()).await;
    let f = crate::fast_path::Fixture::create(&app).await;
    let mut ids = Vec::new();
    for (tag, lane) in [
        ("v1.1.0", None),
        ("v1.1.0-a", Some("feat-a")),
        ("v1.1.0-b", Some("feat-b")),
    ] {
        let (s, v) = f
            .ci
            .post(
                &format!("/api/v1/apps/{}/deployments", f.checkout),
                serde_json::json!({"image": format!("{}:{tag}", crate::fast_path::IMAGE), "lane": lane}),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::ACCEPTED, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    for id in ids {
        let done = crate::fast_path::finished(&f.ci, id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    run_script(
        &app,
        "app_lanes.mjs",
        &[
            ("ROLLWAY_USER_PASSWORD", USER_PASSWORD),
            ("ROLLWAY_NODE_ID", &f.org.pay_api.to_string()),
            ("ROLLWAY_APP_ID", &f.checkout.to_string()),
        ],
    )
    .await;
    assert_saved(&["app-page.png", "app-lane-removed.png"]);
    let gone = crate::common::eventually(std::time::Duration::from_secs(20), || async {
        f.sim.sim.deployment("dev", "checkout--feat-a").is_none()
    })
    .await;
    assert!(gone, "the lane's Deployment is deleted");
    assert!(f.sim.sim.deployment("dev", "checkout--feat-b").is_some());
}

/// An owner freezes prod from her node's page and lets a hotfix through
/// from its order's page.
#[tokio::test]
async fn browser_an_owner_freezes_prod_and_lets_a_hotfix_through() {
    let app = TestApp::start_with(Backend::Sqlite, crate::engine::engine_start()).await;
    let r = crate::engine::Rollout::create(&app).await;
    let (s, hotfix) = r
        .eric
        .post(
            "/api/v1/work-orders",
            serde_json::json!({"release_item_id": r.item, "version": "v1.2.0",
                               "title": "Stop double charges",
                               "hotfix_reason": "checkout charges cards twice"}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{hotfix}");
    let id = hotfix["id"].as_i64().unwrap();
    let (s, v) = r
        .olivia
        .post(
            &format!("/api/v1/work-orders/{id}/approve"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    r.deploy(id, 1).await;
    crate::engine::wait_stage(&r.eric, id, 1, "succeeded").await;
    run_script(
        &app,
        "freeze_hotfix.mjs",
        &[
            ("ROLLWAY_USER_PASSWORD", USER_PASSWORD),
            ("ROLLWAY_NODE_ID", &r.org.pay.to_string()),
            ("ROLLWAY_ORDER_ID", &id.to_string()),
        ],
    )
    .await;
    assert_saved(&[
        "freeze-node.png",
        "freeze-held-hotfix.png",
        "freeze-let-through.png",
        "freeze-calendar.png",
    ]);
    let (_, order) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
    assert!(
        order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "freeze_overridden" && e["actor"] == "olivia"),
        "{order:#}"
    );
}

#[tokio::test]
async fn browser_every_page_fits_a_phone() {
    let app = TestApp::start_with(Backend::Sqlite, crate::engine::engine_start()).await;
    let rollout = crate::engine::Rollout::create(&app).await;
    // A deployed stage: pods, logs and a Deploy… for the next stage.
    let id = rollout.approved_order("v1.1.0").await;
    rollout.deploy(id, 1).await;
    crate::engine::wait_stage(&rollout.eric, id, 1, "succeeded").await;
    run_script(&app, "phone_width.mjs", &[]).await;
    assert_saved(&["phone-menu-open.png", "phone-work-orders-N.png"]);
}

/// The tour `rollway demo` prints, clicked through in the browser on the
/// demo itself.
#[tokio::test]
async fn browser_the_demo_tour_ships_a_good_tag_and_its_gate_rolls_back_the_bad_one() {
    let demo = crate::demo::Demo::start();
    run_node(
        &demo.url,
        "demo_tour.mjs",
        &[
            ("ROLLWAY_ADMIN_PASSWORD", demo.passwords["admin"].as_str()),
            (
                "DEMO_ENGINEER_PASSWORD",
                demo.passwords["engineer"].as_str(),
            ),
            ("DEMO_OWNER_PASSWORD", demo.passwords["owner"].as_str()),
        ],
        String::new,
    )
    .await;
    assert_saved(&[
        "demo-staging-verified.png",
        "demo-prod-waits-for-sign-off.png",
        "demo-prod-succeeded.png",
        "demo-bad-rolled-back.png",
    ]);
}

#[tokio::test]
async fn browser_a_person_signs_in_through_single_sign_on() {
    let provider = crate::fake_oidc::FakeOidc::start().await;
    provider.interactive();
    provider.sign_in_as(serde_json::json!({
        "sub": "u-alice", "preferred_username": "alice", "name": "Alice Liddell",
        "groups": ["pay-team"],
    }));
    let app = crate::sso::start_with_sso(
        Backend::Sqlite,
        &provider,
        &[
            "--oidc-groups-claim",
            "groups",
            "--oidc-group-role",
            "pay-team=/acme/pay:engineer",
            "--password-login",
            "admins",
        ],
    )
    .await;
    let org = crate::common::Org::create(&app).await;
    run_script(
        &app,
        "sso_login.mjs",
        &[("ROLLWAY_NODE_ID", &org.pay.to_string())],
    )
    .await;
    assert_saved(&[
        "sso-login.png",
        "sso-provider.png",
        "sso-signed-in.png",
        "sso-settings.png",
    ]);
    // The browser's sign-in went through the provider's token endpoint.
    assert!(provider.requests().contains(&"POST token".to_string()));
}
