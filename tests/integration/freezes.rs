//! Freeze windows (issue 17): a recurring window in a time zone with
//! daylight saving refuses a stage's deploy and a CI fast-path deploy
//! with 409 `frozen` naming it and when it ends, only for the environment
//! classes it names; a hotfix goes through once an owner of the frozen
//! node (not its filer, not a viewer) lets it, on the timeline; lifting
//! the window lets everything through again. Bad windows are refused
//! field by field, and the calendar lists what is coming.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Org, TestApp, USER_PASSWORD};
use crate::db_test;
use crate::engine::{IMAGE, Rollout, engine_start, timeline_kinds, wait_stage};

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

/// The paragraph of `html` from `marker` on (to its `</p>`).
fn paragraph<'a>(html: &'a str, marker: &str) -> &'a str {
    let from = &html[html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker}: {html}"))..];
    &from[..from.find("</p>").unwrap_or(from.len())]
}

/// Starts stage `n` of order `id` as eric: the answer.
async fn deploy(r: &Rollout, id: i64, n: u32) -> (StatusCode, Value) {
    r.eric
        .post(
            &format!("/api/v1/work-orders/{id}/stages/{n}/deploy"),
            json!({}),
        )
        .await
}

db_test!(
    a_recurring_freeze_holds_prod_stages_and_ci_deploys_until_an_owner_lets_a_hotfix_through,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let fast_path = format!("/api/v1/apps/{}/deployments", r.dev_app().await);

        // An owner of /acme/pay freezes its prod and dev targets: from
        // each minute's start until New Year in Berlin, i.e. from now.
        let windows = format!("/api/v1/nodes/{}/freeze-windows", r.org.pay);
        let freeze = json!({"reason": "Year-end freeze", "cron_start": "* * * * *",
                            "cron_end": "0 0 1 1 *", "time_zone": "Europe/Berlin",
                            "environments": ["prod", "dev"]});
        let (s, v) = r.eric.post(&windows, freeze.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "an engineer may not: {v}");
        let (s, window) = r.olivia.post(&windows, freeze).await;
        assert_eq!(s, StatusCode::CREATED, "{window}");
        assert!(window["active"]["end"].is_i64(), "{window}");
        let until = "-01-01 00:00 Europe/Berlin";
        let vera = app.api(Some(&app.token_for("vera")));
        let (s, listed) = vera
            .get(&format!("/api/v1/nodes/{}/freeze-windows", r.org.pay_api))
            .await;
        assert_eq!(s, StatusCode::OK, "{listed}");
        assert_eq!(listed[0]["id"], window["id"], "inherited by the subtree");
        let vera_pages = app.browser_as("vera", USER_PASSWORD).await;
        let (_, html) = vera_pages
            .get(&format!("/tree/nodes/{}", r.org.pay_api))
            .await;
        let row = format!(r#"data-window="{}""#, window["id"]);
        assert!(html.contains(&row) && html.contains("frozen now"), "{html}");
        assert!(!html.contains(r#"id="freeze-form""#), "a viewer sets none");
        let (_, html) = vera_pages.get("/freezes").await;
        assert!(html.contains(&row) && html.contains("on now"), "{html}");

        // An order: staging is not frozen, prod is — 409 naming the window.
        let order = r.approved_order("v1.1.0").await;
        let (s, v) = deploy(&r, order, 1).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, order, 1, "succeeded").await;
        let (s, v) = deploy(&r, order, 2).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "frozen", "{v}");
        for part in ["Year-end freeze", "/acme/pay", until, "hotfix"] {
            assert!(message(&v).contains(part), "{part}: {v}");
        }
        assert_eq!(
            crate::engine::stage(&r.eric, order, 2).await["status"],
            "pending"
        );
        // Said before the cluster is asked anything: an unreachable prod
        // cluster still answers `frozen`.
        let cluster = format!("/api/v1/clusters/{}", r.prod_cluster);
        let unreachable = r
            .sim
            .kubeconfig()
            .replace(&r.sim.url(), "http://127.0.0.1:9");
        assert_ne!(unreachable, r.sim.kubeconfig());
        let (s, v) = r
            .org
            .admin
            .patch(&cluster, json!({ "kubeconfig": unreachable }))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = deploy(&r, order, 2).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("frozen")),
            "{v}"
        );
        let (s, v) = r
            .org
            .admin
            .patch(&cluster, json!({ "kubeconfig": r.sim.kubeconfig() }))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(r.image("prod"), format!("{IMAGE}:v1.0.0"));
        // CI's fast path to the dev app: refused the same way.
        let (s, v) = r
            .eric
            .post(&fast_path, json!({"image": format!("{IMAGE}:v1.1.0")}))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "frozen", "{v}");
        assert!(message(&v).contains(until), "{v}");
        // Only a hotfix may be let through.
        let lift = |id: i64| format!("/api/v1/work-orders/{id}/freeze-override");
        let (s, v) = r.olivia.post(&lift(order), json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(message(&v).contains("not a hotfix"), "{v}");
        let (s, v) = r
            .eric
            .post(
                &format!("/api/v1/work-orders/{order}/close"),
                json!({"reason": "waiting for the thaw"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        // A hotfix: held at prod until an owner other than its filer lets
        // it through.
        let (s, hotfix) = r
            .eric
            .post(
                "/api/v1/work-orders",
                json!({"release_item_id": r.item, "version": "v1.2.0", "title": "Stop double charges",
                       "hotfix_reason": "checkout charges cards twice"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{hotfix}");
        assert_eq!(hotfix["hotfix_reason"], "checkout charges cards twice");
        let id = hotfix["id"].as_i64().unwrap();
        let (s, v) = r
            .olivia
            .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(deploy(&r, id, 1).await.0, StatusCode::ACCEPTED);
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let (s, v) = deploy(&r, id, 2).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("frozen")),
            "{v}"
        );
        assert!(
            message(&v).contains("an owner of /acme/pay (or an admin) lets this hotfix through"),
            "{v}"
        );
        // Its page says so; its owner gets the button, its filer a hint.
        let page = |who: &'static str| {
            let app = &app;
            async move {
                let (s, html) = app
                    .browser_as(who, USER_PASSWORD)
                    .await
                    .get(&format!("/work-orders/{id}"))
                    .await;
                assert_eq!(s, StatusCode::OK);
                html
            }
        };
        let html = page("olivia").await;
        assert!(html.contains(r#"id="hotfix-badge""#), "{html}");
        assert!(html.contains(r#"data-held="2""#), "{html}");
        assert!(
            html.contains("data-frozen"),
            "the held stage's row says so: {html}"
        );
        assert!(
            !html.contains(&format!("/work-orders/{id}/stages/2/deploy")),
            "no Deploy… for a held stage: {html}"
        );
        assert!(html.contains(r#"id="freeze-override-form""#), "{html}");
        let html = page("eric").await;
        assert!(!html.contains(r#"id="freeze-override-form""#), "{html}");
        assert!(html.contains("other than who filed it"), "{html}");
        let (s, v) = r.eric.post(&lift(id), json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "its filer may not: {v}");
        let (s, v) = vera.post(&lift(id), json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "a viewer may not: {v}");
        let (s, v) = r
            .olivia
            .post(&lift(id), json!({"comment": "cards are charged twice"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v[0]["id"], window["id"], "{v}");
        let (_, detail) = r.eric.get(&format!("/api/v1/work-orders/{id}")).await;
        let event = detail["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "freeze_overridden")
            .unwrap_or_else(|| panic!("no override on the timeline: {detail:#}"))
            .clone();
        assert_eq!(event["actor"], "olivia", "{event}");
        assert!(
            event["message"]
                .as_str()
                .unwrap()
                .contains("Year-end freeze"),
            "{event}"
        );
        let (s, v) = deploy(&r, id, 2).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, id, 2, "succeeded").await;
        assert_eq!(r.image("prod"), format!("{IMAGE}:v1.2.0"));
        assert!(
            timeline_kinds(&r.eric, id)
                .await
                .contains(&"freeze_overridden".to_string())
        );

        // Lifted by an owner: CI deploys again.
        let one = format!("/api/v1/freeze-windows/{}", window["id"]);
        let (s, v) = r.eric.delete(&one).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = r.olivia.delete(&one).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = r
            .eric
            .post(&fast_path, json!({"image": format!("{IMAGE}:v1.2.0")}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");

        // A freeze two hours ahead: the next order's page warns of it.
        let next = r.approved_order("v1.3.0").await;
        let now = rollway::db::now_ms();
        let (s, v) = r
            .olivia
            .post(
                &windows,
                json!({"reason": "DB migration", "starts_at": now + 2 * 3_600_000 + 60_000,
                       "ends_at": now + 3 * 3_600_000}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let eric_pages = app.browser_as("eric", USER_PASSWORD).await;
        let (_, html) = eric_pages.get(&format!("/work-orders/{next}")).await;
        let coming = paragraph(&html, r#"id="freeze-coming""#);
        assert!(
            coming.contains("in 2 h") && coming.contains("DB migration"),
            "{coming}"
        );
        assert!(!html.contains("data-held="), "nothing holds it yet");

        // A window on the apps' own node, below the item's: it holds the
        // stage whose app it covers, by its environment class.
        let (s, v) = r
            .olivia
            .post(
                &format!("/api/v1/nodes/{}/freeze-windows", r.org.pay_api),
                json!({"reason": "API cut-over", "starts_at": now - 60_000,
                       "ends_at": now + 3_600_000, "environments": ["prod"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (_, html) = eric_pages.get(&format!("/work-orders/{next}")).await;
        let held = paragraph(&html, r#"data-held="2""#);
        assert!(
            held.contains("API cut-over") && held.contains("/acme/pay/api"),
            "{held}"
        );
        assert!(!html.contains(r#"data-held="1""#), "staging is not prod");
        let (s, v) = deploy(&r, next, 1).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        wait_stage(&r.eric, next, 1, "succeeded").await;
        let (s, v) = deploy(&r, next, 2).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("frozen")),
            "{v}"
        );
        assert!(message(&v).contains("API cut-over"), "{v}");
    }
);

db_test!(
    bad_windows_are_refused_field_by_field_and_the_calendar_lists_whats_coming,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let olivia = app.api(Some(&app.token_for("olivia")));
        let otto = app.api(Some(&app.token_for("otto")));
        let path = format!("/api/v1/nodes/{}/freeze-windows", org.pay);
        let now = rollway::db::now_ms();
        let day = 86_400_000;
        for (body, field) in [
            (
                json!({"reason": "x", "cron_start": "0 18 * * 5"}),
                "cron_end",
            ),
            (
                json!({"reason": "x", "cron_start": "0 25 * * 5", "cron_end": "0 8 * * 1"}),
                "cron_start",
            ),
            (
                json!({"reason": "x", "cron_start": "0 18 * * 5", "cron_end": "0 8 * * 1",
                       "time_zone": "Europe/Atlantis"}),
                "time_zone",
            ),
            (
                json!({"reason": "x", "cron_start": "0 0 30 2 *", "cron_end": "0 8 * * 1"}),
                "cron_start",
            ),
            (
                json!({"reason": "x", "starts_at": now, "ends_at": now + day, "cron_start": "* * * * *"}),
                "starts_at",
            ),
            (
                json!({"reason": "x", "starts_at": now - 2 * day, "ends_at": now - day}),
                "ends_at",
            ),
            (
                json!({"reason": "x", "starts_at": now + day, "ends_at": now}),
                "ends_at",
            ),
            (
                json!({"reason": " ", "starts_at": now, "ends_at": now + day}),
                "reason",
            ),
            (
                json!({"reason": "x", "starts_at": now, "ends_at": now + day, "environments": ["qa"]}),
                "environments",
            ),
            (json!({"reason": "x"}), "starts_at"),
        ] {
            let (s, v) = olivia.post(&path, body.clone()).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
            assert_eq!(v["error"]["field"], field, "{body}: {v}");
        }
        let (_, windows) = org.admin.get("/api/v1/freeze-windows").await;
        assert_eq!(windows, json!([]), "nothing was stored");

        // A weekend freeze and a one-off one in ten days.
        let (s, weekend) = olivia
            .post(
                &path,
                json!({"reason": "weekends", "cron_start": "0 18 * * FRI", "cron_end": "0 8 * * MON",
                       "time_zone": "America/New_York"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{weekend}");
        let (s, once) = olivia
            .post(
                &path,
                json!({"reason": "migration", "starts_at": now + 10 * day, "ends_at": now + 10 * day + 3_600_000}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{once}");
        let (s, calendar) = olivia.get("/api/v1/freeze-windows/calendar?days=14").await;
        assert_eq!(s, StatusCode::OK, "{calendar}");
        let entries = calendar.as_array().unwrap();
        let weekends = entries
            .iter()
            .filter(|e| e["window_id"] == weekend["id"])
            .count();
        assert!((2..=3).contains(&weekends), "{calendar:#}");
        assert_eq!(
            entries
                .iter()
                .filter(|e| e["window_id"] == once["id"])
                .count(),
            1,
            "{calendar:#}"
        );
        let starts: Vec<i64> = entries
            .iter()
            .map(|e| e["start"].as_i64().unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "soonest first");
        // Each weekend stretch runs 62 hours (Friday 18:00 to Monday 08:00,
        // one more or less across a daylight-saving change).
        for e in entries.iter().filter(|e| e["window_id"] == weekend["id"]) {
            let hours = (e["end"].as_i64().unwrap() - e["start"].as_i64().unwrap()) / 3_600_000;
            assert!((61..=63).contains(&hours), "{e}");
        }
        let (s, v) = olivia.get("/api/v1/freeze-windows/calendar?days=0").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        // Someone outside /acme/pay sees none of it.
        let (s, seen) = otto.get("/api/v1/freeze-windows").await;
        assert_eq!((s, seen), (StatusCode::OK, json!([])));
        let (s, _) = otto
            .get(&format!("/api/v1/freeze-windows/{}", once["id"]))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);
