//! Notifications (issue 17): an owner sets a signed webhook and a Slack
//! destination on /acme/pay; events of orders below it are delivered by
//! the engine, each once. A receiver answering 500 twice then 200 gets
//! three attempts under one `webhook-id`, signed so that the Standard
//! Webhooks reference implementation (npm `standardwebhooks`) verifies
//! them; Slack's 429 `Retry-After` is honoured; a 410 disables its
//! destination; a delivery is sent again on request. A server killed while
//! a delivery is in flight delivers it once after its restart, and two
//! servers on one database deliver each event once.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Api, Org, Start, TestApp, eventually};
use crate::db_test;
use crate::engine::{Rollout, engine_start, file_order};

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
    /// What it answered.
    status: u16,
}

/// Answers by path: each a status and a `Retry-After`.
type Scripts = BTreeMap<String, Vec<(u16, Option<&'static str>)>>;

/// A receiver of webhooks: answers each path from a script (the last
/// answer repeats), or hangs while `hang` is set; records every request.
#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    scripts: Arc<Mutex<Scripts>>,
    hang: Arc<Mutex<bool>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    /// Answers requests to `/path` with `answers` in turn (status, and a
    /// `Retry-After`), the last one from then on.
    fn script(&self, path: &str, answers: &[(u16, Option<&'static str>)]) {
        self.scripts
            .lock()
            .unwrap()
            .insert(format!("/{path}"), answers.to_vec());
    }

    fn got(&self, path: &str) -> Vec<Received> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == format!("/{path}"))
            .cloned()
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = format!("/{path}");
    if *r.hang.lock().unwrap() {
        std::future::pending::<()>().await;
    }
    let (status, retry_after) = {
        let mut scripts = r.scripts.lock().unwrap();
        let answers = scripts
            .entry(path.clone())
            .or_insert_with(|| vec![(200, None)]);
        if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0]
        }
    };
    r.log.lock().unwrap().push(Received {
        path,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).to_string(),
        status,
    });
    let mut response = AxumStatus::from_u16(status).unwrap().into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

/// Server flags: short leases, attempts a second apart, and receivers on
/// this host allowed.
fn notify_start() -> Start {
    let mut start = engine_start();
    start.args.extend(
        [
            "--webhook-retry-seconds",
            "0,1,1",
            "--webhook-allow-local-network",
        ]
        .map(String::from),
    );
    start
}

/// Sets a destination on /acme/pay as olivia: the answer.
async fn destination(olivia: &Api, org: &Org, body: Value) -> Value {
    let (s, v) = olivia
        .post(
            &format!("/api/v1/nodes/{}/notification-destinations", org.pay),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

/// Destination `id`'s delivery log as `api` reads it.
async fn deliveries(api: &Api, id: &Value) -> Vec<Value> {
    let (s, v) = api
        .get(&format!(
            "/api/v1/notification-destinations/{id}/deliveries"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

/// Checks `messages` with the npm reference implementation.
fn verify_with_reference(secret: &str, messages: &[Received]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("target/test-artifacts/webhooks");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("messages-{}.json", std::process::id()));
    let list: Vec<Value> = messages
        .iter()
        .map(|m| json!({"headers": m.headers, "body": m.body}))
        .collect();
    std::fs::write(
        &file,
        json!({"secret": secret, "messages": list}).to_string(),
    )
    .unwrap();
    let out = Command::new("node")
        .arg(root.join("tests/browser/verify_webhooks.mjs"))
        .arg(&file)
        .current_dir(root.join("tests/browser"))
        .output()
        .expect("node (installed by ./scripts/test)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert_eq!(said.trim(), format!("verified {}", messages.len()));
}

db_test!(
    webhooks_are_signed_retried_under_one_id_and_delivered_once,
    |backend| async move {
        let app = TestApp::start_with(backend, notify_start()).await;
        let r = Rollout::create(&app).await;
        let (receiver, url) = Receiver::start().await;
        receiver.script("hook", &[(500, None), (500, None), (200, None)]);
        receiver.script("slack", &[(429, Some("1")), (200, None)]);
        receiver.script("gone", &[(410, None)]);

        // Only owners set destinations; bad ones are refused field by field.
        let list = format!("/api/v1/nodes/{}/notification-destinations", r.org.pay);
        let body = json!({"name": "Release bot", "kind": "webhook", "url": format!("{url}/hook"),
                          "events": ["filed", "approved"]});
        let (s, v) = r.eric.post(&list, body.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        for (bad, field) in [
            (json!({"kind": "email"}), "kind"),
            (json!({"url": "file:///etc/passwd"}), "url"),
            (json!({"url": "https://user:pw@example.com/"}), "url"),
            (json!({"events": ["deployed"]}), "events"),
            (json!({"name": ""}), "name"),
        ] {
            let mut asked = body.clone();
            for (k, v) in bad.as_object().unwrap() {
                asked[k] = v.clone();
            }
            let (s, v) = r.olivia.post(&list, asked).await;
            assert_eq!(
                (s, v["error"]["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
                "{v}"
            );
        }
        let hook = destination(&r.olivia, &r.org, body).await;
        let secret = hook["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"), "{hook}");
        assert_eq!(hook["url_hint"], format!("{url}/…"));
        let slack = destination(
            &r.olivia,
            &r.org,
            json!({"name": "#releases", "kind": "slack", "url": format!("{url}/slack"), "events": ["filed"]}),
        )
        .await;
        assert!(slack["secret"].is_null(), "{slack}");
        let gone = destination(
            &r.olivia,
            &r.org,
            json!({"name": "Old hook", "kind": "webhook", "url": format!("{url}/gone")}),
        )
        .await;
        // Never shown again; not to an engineer at all.
        let (s, shown) = r
            .olivia
            .get(&format!("/api/v1/notification-destinations/{}", hook["id"]))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert!(shown.get("secret").is_none() && !shown.to_string().contains(&secret));
        let (s, _) = r
            .eric
            .get(&format!("/api/v1/notification-destinations/{}", hook["id"]))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        // Filed: the webhook gets three attempts, one id, one success.
        let order = file_order(&r.eric, r.item, "v1.1.0").await;
        let done = eventually(Duration::from_secs(30), || async {
            receiver.got("hook").iter().any(|m| m.status == 200)
                && receiver.got("slack").iter().any(|m| m.status == 200)
                && !receiver.got("gone").is_empty()
        })
        .await;
        assert!(done, "delivered: {:#?}", receiver.log.lock().unwrap());
        let got = receiver.got("hook");
        assert_eq!(
            got.iter().map(|m| m.status).collect::<Vec<_>>(),
            [500, 500, 200]
        );
        let id = &got[0].headers["webhook-id"];
        assert!(
            got.iter().all(|m| &m.headers["webhook-id"] == id),
            "{got:#?}"
        );
        let sent: Value = serde_json::from_str(&got[2].body).unwrap();
        assert_eq!(sent["type"], "filed");
        assert_eq!(sent["data"]["work_order_id"], order);
        assert!(
            sent["data"]["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/work-orders/{order}")),
            "{sent}"
        );
        verify_with_reference(&secret, &got);
        let log = deliveries(&r.olivia, &hook["id"]).await;
        assert_eq!(log.len(), 1, "{log:#?}");
        assert_eq!(
            (
                &log[0]["status"],
                &log[0]["attempts"],
                &log[0]["message_id"]
            ),
            (&json!("delivered"), &json!(3), &json!(id))
        );
        // Slack: its text links the order; the 429 was waited out.
        let slack_got = receiver.got("slack");
        assert_eq!(
            slack_got.iter().map(|m| m.status).collect::<Vec<_>>(),
            [429, 200]
        );
        let text: Value = serde_json::from_str(&slack_got[1].body).unwrap();
        let text = text["text"].as_str().unwrap();
        assert!(
            text.contains(&format!("/work-orders/{order}|#{order} Ship v1.1.0>"))
                && text.contains("filed by eric"),
            "{text}"
        );
        // 410: the destination is disabled and told of nothing more.
        let disabled = eventually(Duration::from_secs(10), || async {
            let (_, d) = r
                .olivia
                .get(&format!("/api/v1/notification-destinations/{}", gone["id"]))
                .await;
            d["disabled_reason"]
                .as_str()
                .is_some_and(|m| m.contains("410"))
        })
        .await;
        assert!(disabled);

        // Approved: one attempt this time; the disabled one gets nothing.
        let (s, v) = r
            .olivia
            .post(&format!("/api/v1/work-orders/{order}/approve"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let approved = eventually(Duration::from_secs(30), || async {
            receiver.got("hook").len() == 4
        })
        .await;
        assert!(approved, "{:#?}", receiver.got("hook"));
        let last: Value = serde_json::from_str(&receiver.got("hook")[3].body).unwrap();
        assert_eq!(last["type"], "approved");
        assert_eq!(receiver.got("gone").len(), 1);
        assert_eq!(deliveries(&r.olivia, &gone["id"]).await.len(), 1);

        // Sent again on request: the same id once more.
        let first = log[0]["id"].clone();
        let (s, v) = r
            .olivia
            .post(
                &format!("/api/v1/notification-deliveries/{first}/send-again"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let again = eventually(Duration::from_secs(30), || async {
            receiver.got("hook").len() == 5
        })
        .await;
        assert!(again);
        assert_eq!(&receiver.got("hook")[4].headers["webhook-id"], id);
        verify_with_reference(&secret, &receiver.got("hook"));
        let (_, audit) = r.org.admin.get("/api/v1/audit?action=notification_").await;
        assert!(audit.to_string().contains("send_again"), "{audit}");
        assert!(
            !audit.to_string().contains(&secret),
            "the secret is never logged"
        );
        assert!(!app.output().contains(&secret), "nor in the server's log");
    }
);

db_test!(
    a_delivery_in_flight_when_its_server_dies_is_delivered_once_after_the_restart,
    |backend| async move {
        let app = TestApp::start_with(backend, notify_start()).await;
        let r = Rollout::create(&app).await;
        let (receiver, url) = Receiver::start().await;
        destination(
            &r.olivia,
            &r.org,
            json!({"name": "hook", "kind": "webhook", "url": format!("{url}/hook"), "events": ["filed"]}),
        )
        .await;
        *receiver.hang.lock().unwrap() = true;
        file_order(&r.eric, r.item, "v1.1.0").await;
        // The server dies while the receiver holds the first attempt.
        let in_flight = eventually(Duration::from_secs(30), || async {
            // The only job here: the delivery's.
            app.output().contains("job started")
        })
        .await;
        assert!(in_flight, "{}", app.output());
        let db = app.stop();
        *receiver.hang.lock().unwrap() = false;
        let app = TestApp::start_on(db, notify_start());
        let delivered = eventually(Duration::from_secs(30), || async {
            receiver.got("hook").len() == 1
        })
        .await;
        assert!(delivered, "{}", app.output());
        // Nothing more comes: the delivery is recorded.
        let admin = app.api(Some(&app.admin_token()));
        let recorded = eventually(Duration::from_secs(10), || async {
            let (_, list) = admin.get("/api/v1/notification-destinations").await;
            let id = &list[0]["id"];
            let (_, log) = admin
                .get(&format!(
                    "/api/v1/notification-destinations/{id}/deliveries"
                ))
                .await;
            log[0]["status"] == "delivered"
        })
        .await;
        assert!(recorded);
        assert_eq!(receiver.got("hook").len(), 1);
    }
);

db_test!(
    two_servers_on_one_database_deliver_each_event_once,
    |backend| async move {
        let app = TestApp::start_with(backend, notify_start()).await;
        let r = Rollout::create(&app).await;
        let twin = TestApp::start_on(app.db.shared(), notify_start());
        let (receiver, url) = Receiver::start().await;
        let hook = destination(
            &r.olivia,
            &r.org,
            json!({"name": "hook", "kind": "webhook", "url": format!("{url}/hook")}),
        )
        .await;
        // Ten orders filed and closed: ten `filed` events (closing is not
        // told).
        for _ in 0..10 {
            let id = file_order(&r.eric, r.item, "v1.1.0").await;
            let (s, v) = r
                .eric
                .post(
                    &format!("/api/v1/work-orders/{id}/close"),
                    json!({"reason": "again"}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        let all = eventually(Duration::from_secs(60), || async {
            let log = deliveries(&r.olivia, &hook["id"]).await;
            log.len() == 10 && log.iter().all(|d| d["status"] == "delivered")
        })
        .await;
        assert!(all, "{:#?}", deliveries(&r.olivia, &hook["id"]).await);
        let mut ids: Vec<String> = receiver
            .got("hook")
            .iter()
            .map(|m| m.headers["webhook-id"].clone())
            .collect();
        assert_eq!(ids.len(), 10, "{ids:?}");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "each event once");
        drop(twin);
    }
);

#[tokio::test]
async fn webhooks_to_the_local_network_are_refused_unless_allowed() {
    let app = TestApp::start(crate::common::Backend::Sqlite).await;
    let org = Org::create(&app).await;
    let list = format!("/api/v1/nodes/{}/notification-destinations", org.pay);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://localhost/x",
    ] {
        let (s, v) = org
            .admin
            .post(
                &list,
                json!({"name": "inside", "kind": "webhook", "url": url}),
            )
            .await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("url")),
            "{url}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--webhook-allow-local-network"),
            "{v}"
        );
    }
}
