//! What approvers and engineers see on an order's page: what each stage
//! runs now and the commits in between (from GitLab, degrading to the
//! compare link when GitLab is slow), the version picker's dates and
//! marks, a rollout's progress, and times and durations.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Browser, TestApp, USER_PASSWORD, eventually};
use crate::db_test;
use crate::engine::{Rollout, engine_start, file_order, wait_stage};
use crate::fake_gitlab::{Mode, commits_of};

/// The page at `path` once it contains `needle` (the watches warm up on
/// the first read).
async fn page_with(browser: &Browser, path: &str, needle: &str) -> String {
    let ok = eventually(Duration::from_secs(30), || async {
        browser.get(path).await.1.contains(needle)
    })
    .await;
    let html = browser.get(path).await.1;
    assert!(ok, "{path} never showed {needle:?}:\n{html}");
    html
}

async fn file(r: &Rollout, version: &str) -> i64 {
    file_order(&r.eric, r.item, version).await
}

db_test!(
    approvers_see_what_runs_now_and_the_commits_in_between,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let id = file(&r, "v1.2.0").await;
        let olivia = app.browser_as("olivia", USER_PASSWORD).await;
        let order = format!("/work-orders/{id}");
        let html = page_with(&olivia, &order, "runs <code data-from>v1.0.0</code>").await;
        for stage in ["1", "2"] {
            let row = format!("<li data-stage=\"{stage}\">");
            let at = html.find(&row).expect("a row per stage");
            assert!(
                html[at..].contains("runs <code data-from>v1.0.0</code> → <code>v1.2.0</code>"),
                "stage {stage}: {html}"
            );
        }
        assert!(html.contains(&format!("hx-get=\"/work-orders/{id}/changes\"")));

        // The commits, newest first, and GitLab's compare page.
        let (s, fragment) = olivia.get_htmx(&format!("/work-orders/{id}/changes")).await;
        assert_eq!(s, StatusCode::OK, "{fragment}");
        let compare = format!("{}/acme/checkout/-/compare/v1.0.0...v1.2.0", r.gitlab.url);
        assert!(
            fragment.contains(&format!("href=\"{compare}\"")),
            "{fragment}"
        );
        for tag in ["v1.0.0", "v1.2.0"] {
            let page = format!("href=\"{}/acme/checkout/-/tags/{tag}\"", r.gitlab.url);
            assert!(
                fragment.contains(&page),
                "{tag} links its GitLab page: {fragment}"
            );
        }
        let titles: Vec<String> = ["v1.2.0", "v1.1.0"]
            .iter()
            .flat_map(|t| commits_of(t))
            .collect();
        let mut at = 0;
        for title in &titles {
            let found = fragment[at..]
                .find(title.as_str())
                .unwrap_or_else(|| panic!("{title} after the ones before it: {fragment}"));
            at += found;
        }
        assert!(fragment.contains("4 commits:"), "{fragment}");
        for older in commits_of("v1.0.0") {
            assert!(!fragment.contains(&older), "{older} is already running");
        }
        assert!(fragment.contains("Dana Developer"), "authors shown");
        assert!(
            fragment.contains("<time datetime=\"2026-11-01T10:"),
            "{fragment}"
        );
        // Without htmx it is a page of its own.
        let (s, page) = olivia.get(&format!("/work-orders/{id}/changes")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(page.contains("<nav class=\"mainnav\"") && page.contains(&compare));

        // The item's page links its GitLab project.
        let (_, item_page) = olivia.get(&format!("/release-items/{}", r.item)).await;
        assert!(
            item_page.contains(&format!("<a href=\"{}/acme/checkout\" rel=\"noopener noreferrer\" target=\"_blank\" data-gitlab-project>", r.gitlab.url)),
            "{item_page}"
        );

        // The version picker: dates, messages, and where each tag runs.
        let eric = app.browser_as("eric", USER_PASSWORD).await;
        let (_, picker) = eric
            .get(&format!("/work-orders/new/versions?item={}", r.item))
            .await;
        assert!(
            picker.contains(
                r#"<option value="v1.0.0" data-running="staging,prod">v1.0.0 · 2026-11-01 ("#
            ),
            "{picker}"
        );
        assert!(
            picker.contains("· Release v1.0.0 · running on staging, prod</option>"),
            "{picker}"
        );
        assert!(
            picker.find("value=\"v1.5.0\"") < picker.find("value=\"v1.0.0\""),
            "newest first"
        );
        assert!(picker.contains("id=\"version-filter\""), "searchable");

        // A slow GitLab costs the list, not the page: the link stays.
        r.gitlab.set_mode(Mode::Hang);
        let started = std::time::Instant::now();
        let (s, fragment) = olivia.get_htmx(&format!("/work-orders/{id}/changes")).await;
        assert_eq!(s, StatusCode::OK, "{fragment}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(fragment.contains("did not answer within 3 s"), "{fragment}");
        assert!(
            fragment.contains(&format!("href=\"{compare}\"")),
            "{fragment}"
        );
    }
);

#[tokio::test]
async fn an_order_going_back_lists_the_commits_it_removes() {
    let app = TestApp::start_with(crate::common::Backend::Sqlite, engine_start()).await;
    let r = Rollout::create(&app).await;
    let id = r.approved_order("v1.2.0").await;
    r.deploy(id, 1).await;
    wait_stage(&r.eric, id, 1, "succeeded").await;
    let (s, v) = r
        .eric
        .post(
            &format!("/api/v1/work-orders/{id}/close"),
            json!({"reason": "enough"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let back = file(&r, "v1.1.0").await;
    let eric = app.browser_as("eric", USER_PASSWORD).await;
    page_with(
        &eric,
        &format!("/work-orders/{back}"),
        "<li data-stage=\"1\"><strong>staging</strong>\n        runs <code data-from>v1.2.0</code>",
    )
    .await;
    let (_, fragment) = eric.get_htmx(&format!("/work-orders/{back}/changes")).await;
    let from_staging = fragment
        .split("<div class=\"comparison\"")
        .find(|c| c.contains("data-from=\"v1.2.0\""))
        .unwrap_or_else(|| panic!("a comparison from what staging runs: {fragment}"));
    assert!(from_staging.contains("goes back"), "{from_staging}");
    assert!(
        from_staging.contains("Going back removes 2 commits:"),
        "{from_staging}"
    );
    assert!(
        from_staging.contains(&commits_of("v1.2.0")[0]),
        "{from_staging}"
    );
    // Prod still runs v1.0.0: v1.1.0 moves it forward.
    let from_prod = fragment
        .split("<div class=\"comparison\"")
        .find(|c| c.contains("data-from=\"v1.0.0\""))
        .unwrap_or_else(|| panic!("a comparison from what prod runs: {fragment}"));
    assert!(
        !from_prod.contains("goes back") && from_prod.contains("2 commits:"),
        "{from_prod}"
    );
    // A GitLab that hangs is waited for once, not once per comparison.
    r.gitlab.set_mode(Mode::Hang);
    let asked = || {
        r.gitlab
            .requests()
            .iter()
            .filter(|q| q.contains("/repository/commits"))
            .count()
    };
    let before = asked();
    let (_, fragment) = eric.get_htmx(&format!("/work-orders/{back}/changes")).await;
    assert_eq!(asked() - before, 1, "{:?}", r.gitlab.requests());
    assert_eq!(
        fragment.matches("did not answer within 3 s").count(),
        2,
        "both comparisons say why: {fragment}"
    );
    r.gitlab.set_mode(Mode::Normal);
    // The order that deployed staging shows what the stage replaced.
    let (_, html) = eric.get(&format!("/work-orders/{id}")).await;
    assert!(html.contains("ran <code data-from>v1.0.0</code>"), "{html}");
}

#[tokio::test]
async fn a_rollout_shows_its_progress_and_every_time_reads_relative() {
    let app = TestApp::start_with(crate::common::Backend::Sqlite, engine_start()).await;
    let r = Rollout::create(&app).await;
    // The new pods never get ready: the stage stays deploying.
    crate::engine_safety::slow_deadline(&r.sim.sim).await;
    r.sim.sim.faults().never_ready(":v1.1.0");
    let id = r.approved_order("v1.1.0").await;
    r.deploy(id, 1).await;
    let eric = app.browser_as("eric", USER_PASSWORD).await;
    let order = format!("/work-orders/{id}");
    // Replicas from the watch, and the new revision next to the old one.
    let html = page_with(&eric, &order, "/2 updated · ").await;
    let progress = &html[html.find("data-progress>").expect("progress shown")..];
    let progress = &progress[..progress.find("</span>").unwrap()];
    assert!(progress.contains("/2 ready"), "{progress}");
    let html = page_with(&eric, &order, "revision 1 → 2").await;
    assert!(
        html.contains("data-took>for "),
        "a running stage says for how long: {html}"
    );
    assert!(html.contains("open for "), "{html}");
    assert!(
        html.contains("<time datetime=\"") && html.contains(" UTC\">just now</time>")
            || html.contains(" s ago</time>"),
        "relative times with the exact one on hover: {html}"
    );
    // Pods right under the stages, refreshing fast while the stage moves.
    let stages = html.find("<h2>Stages</h2>").unwrap();
    let pods = html.find("id=\"pods\"").expect("pods section");
    let timeline = html.find("<h2>Timeline</h2>").unwrap();
    assert!(
        stages < pods && pods < timeline,
        "pods under the stage table"
    );
    let (_, fragment) = eric.get_htmx(&format!("/work-orders/{id}/pods")).await;
    assert!(fragment.contains("hx-trigger=\"every 2s\""), "{fragment}");

    // Once the order is over, nothing on the page asks again.
    r.sim.sim.faults().clear_never_ready();
    let (s, v) = r
        .olivia
        .post(
            &format!("/api/v1/work-orders/{id}/stages/1/cancel"),
            json!({"reason": "stuck"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    wait_stage(&r.eric, id, 1, "failed").await;
    let (s, v) = r
        .olivia
        .post(
            &format!("/api/v1/work-orders/{id}/close"),
            json!({"reason": "stuck"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let (_, html) = eric.get(&order).await;
    assert!(!html.contains("hx-trigger=\"every"), "{html}");
    assert!(html.contains("finished after "), "{html}");
    assert!(html.contains("data-took>took "), "{html}");
    let (_, fragment) = eric.get_htmx(&format!("/work-orders/{id}/pods")).await;
    assert!(
        !fragment.contains("hx-trigger") && fragment.contains("data-poll=\"stopped\""),
        "{fragment}"
    );
}
