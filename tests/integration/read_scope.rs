//! Reads are scoped like writes: a reader sees the subtrees below the
//! nodes where they hold a role (admins: everything). An object elsewhere
//! answers exactly as a missing one, lists leave it out and stay pages of
//! rows the reader may see, and a followed log ends when its reader may no
//! longer read it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Api, Browser, TestApp, USER_PASSWORD, csrf_from};
use crate::db_test;
use crate::engine::{IMAGE, Rollout, engine_start, wait_stage};
use crate::releases::{Release, item_body, order_body};

/// An id no object has.
const MISSING: i64 = 987_654_321;

/// `text` with the number `id` (not part of a longer number) written `ID`.
fn without(text: &str, id: i64) -> String {
    let id = id.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&id) {
        out.push_str(&rest[..at]);
        let before = out.chars().last();
        let after = rest[at + id.len()..].chars().next();
        if before.is_some_and(|c| c.is_ascii_digit()) || after.is_some_and(|c| c.is_ascii_digit()) {
            out.push_str(&id);
        } else {
            out.push_str("ID");
        }
        rest = &rest[at + id.len()..];
    }
    out.push_str(rest);
    out
}

/// An error page with the number `id` in its message written `ID` (the
/// rest of the page is compared as it is).
fn page_without(html: &str, id: i64) -> String {
    let marker = "role=\"alert\">";
    match html.split_once(marker) {
        Some((head, tail)) => {
            let (message, rest) = tail.split_once("</p>").unwrap_or((tail, ""));
            format!("{head}{marker}{}</p>{rest}", without(message, id))
        }
        None => html.to_string(),
    }
}

#[test]
fn numbers_are_replaced_whole() {
    assert_eq!(
        without("id 2 in width=\"22\" and 12, 2", 2),
        "id ID in width=\"22\" and 12, ID"
    );
}

/// eric's order on /acme/pay, waiting for approval.
async fn pending_order(app: &TestApp, r: &Release) -> i64 {
    let eric = app.api(Some(&app.token_for("eric")));
    let (s, v) = eric
        .post("/api/v1/work-orders", order_body(r.item, "v1.5.0"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

db_test!(
    hidden_objects_answer_exactly_like_missing_ones,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let order = pending_order(&app, &r).await;
        let org = &r.org;
        let otto = app.api(Some(&app.token_for("otto")));
        // (method, path with {id}, body with "{id}", the hidden id)
        let api_cases: Vec<(&str, &str, Value, i64)> = vec![
            ("GET", "/api/v1/nodes/{id}", Value::Null, org.pay),
            ("GET", "/api/v1/nodes/{id}/members", Value::Null, org.pay),
            (
                "PATCH",
                "/api/v1/nodes/{id}",
                json!({"title": "Mine"}),
                org.pay,
            ),
            ("GET", "/api/v1/release-items/{id}", Value::Null, r.item),
            (
                "GET",
                "/api/v1/release-items/{id}/versions",
                Value::Null,
                r.item,
            ),
            ("DELETE", "/api/v1/release-items/{id}", Value::Null, r.item),
            ("GET", "/api/v1/work-orders/{id}", Value::Null, order),
            ("POST", "/api/v1/work-orders/{id}/approve", json!({}), order),
            (
                "POST",
                "/api/v1/work-orders/{id}/stages/1/deploy",
                json!({}),
                order,
            ),
            ("GET", "/api/v1/apps/{id}", Value::Null, r.staging_app),
            ("GET", "/api/v1/work-orders?node={id}", Value::Null, org.pay),
            (
                "POST",
                "/api/v1/work-orders",
                json!({"release_item_id": "{id}", "version": "v1.5.0", "title": "Mine"}),
                r.item,
            ),
            (
                "POST",
                "/api/v1/nodes",
                json!({"parent_id": "{id}", "name": "mine", "title": "Mine"}),
                org.pay,
            ),
            (
                "POST",
                "/api/v1/release-items",
                item_body(0, "mine", r.staging_app, r.prod_app),
                org.pay,
            ),
        ];
        let fill = |body: &Value, id: i64| -> Option<Value> {
            match body {
                Value::Null => None,
                b => {
                    let mut b = b.clone();
                    for field in ["release_item_id", "parent_id", "node_id"] {
                        if b.get(field).is_some() {
                            b[field] = json!(id);
                        }
                    }
                    Some(b)
                }
            }
        };
        for (method, path, body, id) in &api_cases {
            let method: reqwest::Method = method.parse().unwrap();
            let (hidden_status, hidden) = otto
                .request(
                    method.clone(),
                    &path.replace("{id}", &id.to_string()),
                    fill(body, *id),
                )
                .await;
            let (missing_status, missing) = otto
                .request(
                    method.clone(),
                    &path.replace("{id}", &MISSING.to_string()),
                    fill(body, MISSING),
                )
                .await;
            assert!(
                [StatusCode::NOT_FOUND, StatusCode::UNPROCESSABLE_ENTITY].contains(&hidden_status),
                "{method} {path}: {hidden_status} {hidden}"
            );
            assert_eq!(
                (hidden_status, without(&hidden.to_string(), *id)),
                (missing_status, without(&missing.to_string(), MISSING)),
                "{method} {path}: a hidden object answers like a missing one"
            );
        }
        // The same through the pages.
        let browser = app.browser_as("otto", USER_PASSWORD).await;
        let page_cases: Vec<(&str, i64)> = vec![
            ("/tree/nodes/{id}", org.pay),
            ("/release-items/{id}", r.item),
            ("/release-items/new?node={id}", org.pay),
            ("/work-orders/{id}", order),
            ("/work-orders/{id}/pods", order),
            ("/work-orders/{id}/stages/1/pods/checkout-1/logs", order),
        ];
        for (path, id) in &page_cases {
            let (hidden_status, hidden) = browser.get(&path.replace("{id}", &id.to_string())).await;
            let (missing_status, missing) = browser
                .get(&path.replace("{id}", &MISSING.to_string()))
                .await;
            assert_eq!(hidden_status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                (hidden_status, page_without(&hidden, *id)),
                (missing_status, page_without(&missing, MISSING)),
                "{path}: a hidden object answers like a missing one"
            );
        }
        for (path, id) in [
            ("/work-orders/{id}/approve", order),
            ("/tree/nodes/{id}/title", org.pay),
            ("/release-items/{id}/delete", r.item),
        ] {
            let (hidden_status, hidden, _) = browser
                .submit(&path.replace("{id}", &id.to_string()), &[("title", "Mine")])
                .await;
            let (missing_status, missing, _) = browser
                .submit(
                    &path.replace("{id}", &MISSING.to_string()),
                    &[("title", "Mine")],
                )
                .await;
            assert_eq!(hidden_status, StatusCode::NOT_FOUND, "POST {path}");
            assert_eq!(
                (hidden_status, page_without(&hidden, id)),
                (missing_status, page_without(&missing, MISSING)),
                "POST {path}: a hidden object answers like a missing one"
            );
        }
        // Nothing was done on otto's behalf: the order still waits, the
        // node kept its title, the item is there.
        let admin = &org.admin;
        let (_, o) = admin.get(&format!("/api/v1/work-orders/{order}")).await;
        assert_eq!(o["state"], "pending_approval");
        assert_eq!(o["approvals"], 0);
        let (_, n) = admin.get(&format!("/api/v1/nodes/{}", org.pay)).await;
        assert_eq!(n["title"], "pay");
        assert_eq!(
            admin
                .get(&format!("/api/v1/release-items/{}", r.item))
                .await
                .0,
            StatusCode::OK
        );
    }
);

/// The `node_path` of every object in a JSON array.
fn paths_of(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|o| o[field].as_str().unwrap().to_string())
        .collect()
}

db_test!(
    readers_see_only_the_subtrees_they_hold_a_role_in,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let org = &r.org;
        let api = |name: &str| app.api(Some(&app.token_for(name)));
        let (vera, otto) = (api("vera"), api("otto"));
        // The tree: the subtrees below one's roles, not what is above them.
        let (_, nodes) = vera.get("/api/v1/nodes").await;
        assert_eq!(paths_of(&nodes, "path"), ["/acme/pay", "/acme/pay/api"]);
        let (_, nodes) = otto.get("/api/v1/nodes").await;
        assert_eq!(paths_of(&nodes, "path"), ["/acme/payroll"]);
        let (_, nodes) = org.admin.get("/api/v1/nodes").await;
        assert_eq!(nodes.as_array().unwrap().len(), 4, "{nodes}");
        assert_eq!(
            vera.get(&format!("/api/v1/nodes/{}", org.acme)).await.0,
            StatusCode::NOT_FOUND,
            "a role does not reach up"
        );
        // Apps and release items: those below one's roles.
        let (_, apps) = vera.get("/api/v1/apps").await;
        assert_eq!(
            paths_of(&apps, "node_path"),
            ["/acme/pay/api", "/acme/pay/api"]
        );
        let (_, apps) = otto.get("/api/v1/apps").await;
        assert_eq!(paths_of(&apps, "node_path"), ["/acme/payroll"]);
        let (_, apps) = otto.get("/api/v1/apps?cluster=staging").await;
        assert_eq!(apps, json!([]), "filters narrow the visible apps only");
        let (_, items) = vera.get("/api/v1/release-items").await;
        assert_eq!(paths_of(&items, "node_path"), ["/acme/pay"]);
        let (_, items) = otto.get("/api/v1/release-items").await;
        assert_eq!(items, json!([]));
        // Clusters are shared infrastructure: admins only.
        let (s, v) = vera.get("/api/v1/clusters").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(
            org.admin
                .get("/api/v1/clusters")
                .await
                .1
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // Pages: the tree page lists vera's subtree only; the node page
        // names the nodes above it without linking them.
        let browser = app.browser_as("vera", USER_PASSWORD).await;
        let (s, tree) = browser.get("/tree").await;
        assert_eq!(s, StatusCode::OK);
        for (id, listed) in [
            (org.pay, true),
            (org.pay_api, true),
            (org.acme, false),
            (org.payroll, false),
        ] {
            assert_eq!(
                tree.contains(&format!("href=\"/tree/nodes/{id}\"")),
                listed,
                "node {id} on vera's tree page"
            );
        }
        let (s, page) = browser.get(&format!("/tree/nodes/{}", org.pay_api)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(page.contains(&format!("href=\"/tree/nodes/{}\"", org.pay)));
        assert!(!page.contains(&format!("href=\"/tree/nodes/{}\"", org.acme)));
        assert!(page.contains("<span>acme</span>"), "the name, unlinked");
        // The work order filter by item name does not reveal other teams'
        // items: an unknown name and a hidden one answer alike.
        let (s_hidden, hidden) = otto_browser_get(&app, "/work-orders?item=checkout").await;
        let (s_missing, missing) = otto_browser_get(&app, "/work-orders?item=nothing").await;
        assert_eq!(s_hidden, StatusCode::OK);
        assert!(hidden.contains("no release item you can see"), "{hidden}");
        // Alike but for the word typed and the page's own CSRF token.
        let plain = |html: &str, typed: &str| {
            html.replace(typed, "X")
                .replace(&csrf_from(html).unwrap_or_default(), "")
        };
        assert_eq!(
            (s_hidden, plain(&hidden, "checkout")),
            (s_missing, plain(&missing, "nothing"))
        );
    }
);

/// A release item `payroll` on /acme/payroll (otto's team), by id.
async fn payroll_item(r: &Release) -> i64 {
    let org = &r.org;
    let (s, item) = org
        .admin
        .post(
            "/api/v1/release-items",
            json!({"node_id": org.payroll, "name": "payroll", "gitlab_project": "acme/payroll",
                   "image_repository": "registry.example.com/acme/payroll",
                   "stages": [{"name": "prod", "app_id": r.payroll_app, "strategy": "rolling"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{item}");
    item["id"].as_i64().unwrap()
}

async fn otto_browser_get(app: &TestApp, path: &str) -> (StatusCode, String) {
    app.browser_as("otto", USER_PASSWORD).await.get(path).await
}

db_test!(
    work_order_lists_are_keyset_pages_of_visible_rows,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let org = &r.org;
        let payroll_item = payroll_item(&r).await;
        // 2,100 closed orders of /acme/pay, then 120 alternating between
        // the teams, so that the newest 50 of all hold 25 of each. eric's
        // team has many orders (its list is read newest first, filtered by
        // path), otto's few (read through the node index): both ways.
        let rows: Vec<String> = (0..2220)
            .map(|n| {
                let (item, node) = if n < 2100 || n % 2 == 0 {
                    (r.item, org.pay)
                } else {
                    (payroll_item, org.payroll)
                };
                format!(
                    "({item}, {node}, 'v1.{n}.0', 'img:v1.{n}.0', 'Order {n}', '', 'closed', 1, 1, {t}, {t})",
                    t = 1_700_000_000_000_i64 + n
                )
            })
            .collect();
        app.db
            .execute(&format!(
                "INSERT INTO work_orders (release_item_id, node_id, version, image, title, description, state, \
                 creator_id, required_approvals, created_at, updated_at) VALUES {}",
                rows.join(", ")
            ))
            .await;
        let pages = |api: Api| async move {
            let mut pages: Vec<Vec<String>> = Vec::new();
            let mut cursor: Option<i64> = None;
            loop {
                let path = match cursor {
                    Some(c) => format!("/api/v1/work-orders?cursor={c}"),
                    None => "/api/v1/work-orders".to_string(),
                };
                let (s, page) = api.get(&path).await;
                assert_eq!(s, StatusCode::OK, "{page}");
                pages.push(paths_of(&page["items"], "node_path"));
                match page["next_cursor"].as_i64() {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
                assert!(pages.len() < 100, "the pages end");
            }
            pages
        };
        let api = |name: &str| app.api(Some(&app.token_for(name)));
        let sizes = |pages: &[Vec<String>]| pages.iter().map(Vec::len).collect::<Vec<_>>();
        let full_pages_then = |pages: usize, last: usize| {
            let mut sizes = vec![50; pages];
            sizes.push(last);
            sizes
        };
        for (name, path, expected) in [
            ("eric", "/acme/pay", full_pages_then(43, 10)),
            ("otto", "/acme/payroll", full_pages_then(1, 10)),
        ] {
            let seen = pages(api(name)).await;
            assert_eq!(
                sizes(&seen),
                expected,
                "{name}: full pages of the rows they may see"
            );
            assert!(
                seen.iter().flatten().all(|p| p == path),
                "{name} sees {path} only"
            );
        }
        let seen = pages(org.admin.clone()).await;
        assert_eq!(sizes(&seen), full_pages_then(44, 20));
        // The list page too: 50 rows of eric's team, and a link to older ones.
        let browser: Browser = app.browser_as("eric", USER_PASSWORD).await;
        let (s, html) = browser.get("/work-orders").await;
        assert_eq!(s, StatusCode::OK);
        let listed: std::collections::BTreeSet<&str> = html
            .split("href=\"/work-orders/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or(""))
            .filter(|id| id.parse::<i64>().is_ok())
            .collect();
        assert_eq!(listed.len(), 50, "{listed:?}");
        assert!(!html.contains("acme/payroll"), "no payroll order listed");
        assert!(html.contains("before="), "a link to the older page");
    }
);

/// Reads a server-sent event stream until its first log line.
async fn first_line(resp: &mut reqwest::Response) {
    let mut seen = String::new();
    while !seen.contains("data:") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("a log line within 10 s")
            .expect("the stream reads")
            .expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Whether the stream ends (or breaks) within `limit`, reading what comes.
async fn ends_within(resp: &mut reqwest::Response, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await
    .is_ok()
}

db_test!(
    a_followed_log_ends_when_its_reader_logs_out_loses_the_role_or_is_disabled,
    |backend| async move {
        let app = TestApp::start_with(backend, engine_start()).await;
        let r = Rollout::create(&app).await;
        let id = r.approved_order("v1.1.0").await;
        r.eric
            .post(
                &format!("/api/v1/work-orders/{id}/stages/1/deploy"),
                json!({}),
            )
            .await;
        wait_stage(&r.eric, id, 1, "succeeded").await;
        let pod = r
            .sim
            .sim
            .pods("staging")
            .into_iter()
            .find(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref()
                    == Some(&format!("{IMAGE}:v1.1.0"))
            })
            .and_then(|p| p.metadata.name)
            .expect("a pod of the new version");
        let stream = format!("/work-orders/{id}/stages/1/pods/{pod}/logs/stream");
        let mut open = Vec::new();
        // olivia keeps her rights: her stream is the control.
        for name in ["olivia", "eric", "vera", "owen"] {
            if name == "owen" {
                let (s, v) = r
                    .org
                    .admin
                    .post(
                        "/api/v1/users",
                        json!({"name": "owen", "password": USER_PASSWORD}),
                    )
                    .await;
                assert_eq!(s, StatusCode::CREATED, "{v}");
                r.org
                    .admin
                    .post(
                        &format!("/api/v1/nodes/{}/members", r.org.pay),
                        json!({"account": "owen", "role": "viewer"}),
                    )
                    .await;
            }
            let browser = app.browser_as(name, USER_PASSWORD).await;
            let mut resp = browser.client.get(app.url(&stream)).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
            first_line(&mut resp).await;
            open.push((name, browser, resp));
        }
        // eric logs out, vera loses her role, owen is disabled.
        let (s, _, _) = open[1].1.submit("/logout", &[]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, members) = r
            .org
            .admin
            .get(&format!("/api/v1/nodes/{}/members", r.org.pay))
            .await;
        let account_of = |name: &str| {
            members
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["account"] == name)
                .map(|m| m["account_id"].as_i64().unwrap())
                .unwrap()
        };
        let (vera, owen) = (account_of("vera"), account_of("owen"));
        let (s, _) = r
            .org
            .admin
            .delete(&format!("/api/v1/nodes/{}/members/{vera}", r.org.pay))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, v) = r
            .org
            .admin
            .patch(&format!("/api/v1/users/{owen}"), json!({"disabled": true}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let mut control = None;
        for (name, _browser, mut resp) in open {
            if name == "olivia" {
                control = Some(resp);
                continue;
            }
            assert!(
                ends_within(&mut resp, Duration::from_secs(20)).await,
                "{name}'s followed log ends"
            );
        }
        // By now every stream was re-checked at least once: olivia's,
        // opened first, is still flowing.
        let mut control = control.unwrap();
        first_line(&mut control).await;
    }
);

db_test!(
    a_reader_of_more_nodes_than_a_statement_lists_sees_their_subtrees_only,
    |backend| async move {
        // 510 nodes below /acme/pay: eric's scope holds more node ids than
        // a statement lists, so his lists keep the rows whose node path
        // lies in it (and pick the page's ids before joining names).
        let app = TestApp::start(backend).await;
        let r = Release::create(&app, false).await;
        let org = &r.org;
        let payroll_item = payroll_item(&r).await;
        let t = 1_700_000_000_000_i64;
        let nodes: Vec<String> = (0..510)
            .map(|i| {
                format!(
                    "({}, 'n-{i}', 'N {i}', '/acme/pay/n-{i}', {t}, {t})",
                    org.pay
                )
            })
            .collect();
        app.db
            .execute(&format!(
                "INSERT INTO nodes (parent_id, name, title, path, created_at, updated_at) VALUES {}",
                nodes.join(", ")
            ))
            .await;
        // Nodes written behind the server's back: say the grants moved.
        app.db
            .execute("UPDATE policy_state SET version = version + 1 WHERE id = 1")
            .await;
        let deep = "(SELECT id FROM nodes WHERE path = '/acme/pay/n-7')";
        let rows: Vec<String> = (0..90)
            .map(|n| {
                let (item, node) = match n % 3 {
                    0 => (r.item, org.pay.to_string()),
                    1 => (payroll_item, org.payroll.to_string()),
                    _ => (r.item, deep.to_string()),
                };
                format!(
                    "({item}, {node}, 'v1.{n}.0', 'img:v1.{n}.0', 'Order {n}', '', 'closed', 1, 1, {t}, {t})"
                )
            })
            .collect();
        app.db
            .execute(&format!(
                "INSERT INTO work_orders (release_item_id, node_id, version, image, title, description, state, \
                 creator_id, required_approvals, created_at, updated_at) VALUES {}",
                rows.join(", ")
            ))
            .await;
        let eric = app.api(Some(&app.token_for("eric")));
        for filter in ["", "?state=closed"] {
            let (s, first) = eric.get(&format!("/api/v1/work-orders{filter}")).await;
            assert_eq!(s, StatusCode::OK, "{first}");
            let cursor = first["next_cursor"].as_i64().expect("a second page");
            let sep = if filter.is_empty() { "?" } else { "&" };
            let (_, second) = eric
                .get(&format!("/api/v1/work-orders{filter}{sep}cursor={cursor}"))
                .await;
            assert!(second["next_cursor"].is_null(), "{second}");
            let mut seen = paths_of(&first["items"], "node_path");
            seen.extend(paths_of(&second["items"], "node_path"));
            assert_eq!(seen.len(), 60, "{filter}: every visible order, once");
            assert_eq!(
                seen.iter().filter(|p| *p == "/acme/pay/n-7").count(),
                30,
                "{filter}: the orders deep in his subtree"
            );
            assert!(
                seen.iter()
                    .all(|p| p == "/acme/pay" || p.starts_with("/acme/pay/")),
                "{filter}: nothing outside /acme/pay: {seen:?}"
            );
        }
        let browser: Browser = app.browser_as("eric", USER_PASSWORD).await;
        let (s, html) = browser.get("/work-orders").await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("/acme/pay/n-7") && !html.contains("acme/payroll"));
    }
);
