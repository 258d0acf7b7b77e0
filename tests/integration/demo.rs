//! `rollway demo` (issue 15): one command, nothing else to install. It
//! starts, prints the URL and the demo logins, marks its clusters as
//! simulated, and its tour works: a good version through a verified
//! rolling stage and a canary with gates at each step and an owner's
//! sign-off, then the bad tag rolled back by its gate.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Api, Browser, bin, eventually};

/// A running `rollway demo`, killed when dropped.
pub struct Demo {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
    pub passwords: std::collections::HashMap<String, String>,
    /// Seconds from the start of the process to its "listening" line.
    started_in: f64,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    pub fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let began = Instant::now();
        let mut child = Command::new(bin())
            .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .env_remove("ROLLWAY_LISTEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rollway demo");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut passwords = std::collections::HashMap::new();
        let mut printed = Vec::new();
        let url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("rollway demo printed no URL: {printed:#?}"));
            printed.push(line.clone());
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [name @ ("admin" | "owner" | "engineer"), password, ..] = words[..] {
                passwords.insert(name.to_string(), password.to_string());
            }
            if let Some(url) = line.strip_prefix("Rollway listening on ") {
                break url.trim().to_string();
            }
        };
        let started_in = began.elapsed().as_secs_f64();
        let all = printed.join("\n");
        assert!(all.contains("Tour:") && all.contains("kubeconfig"), "{all}");
        assert_eq!(passwords.len(), 3, "{all}");
        Demo {
            child,
            url,
            dir,
            passwords,
            started_in,
        }
    }

    /// A token for `account`, made with the CLI on the demo's database.
    fn token(&self, account: &str) -> String {
        let db = self.dir.path().join("demo.db");
        let out = Command::new(bin())
            .arg("--database-url")
            .arg(format!("sqlite://{}", db.display()))
            .args(["admin", "create-token", account, "--name", "tour"])
            .env_remove("ROLLWAY_SECRET_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

async fn stage_of(api: &Api, id: i64, n: usize) -> Value {
    let (_, order) = api.get(&format!("/api/v1/work-orders/{id}")).await;
    order["stage_runs"][n - 1].clone()
}

async fn until(api: &Api, id: i64, n: usize, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let ok = eventually(Duration::from_secs(120), || async {
        check(&stage_of(api, id, n).await)
    })
    .await;
    let now = stage_of(api, id, n).await;
    assert!(ok, "stage {n} of #{id} never {what}: {now:#}");
    now
}

#[tokio::test]
async fn the_demo_starts_in_one_command_and_its_tour_ships_a_good_tag_and_rolls_back_the_bad_one() {
    let demo = Demo::start();
    eprintln!("rollway demo listening after {:.2} s", demo.started_in);
    // Its logins work, and its pages say the clusters are simulated.
    let signed_in = |user: &'static str| {
        let demo = &demo;
        async move {
            let browser = Browser::at(&demo.url);
            let (status, _) = browser.login(user, &demo.passwords[user]).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{user} logs in");
            browser
        }
    };
    let (_, page) = signed_in("owner").await.get("/work-orders").await;
    assert!(page.contains("Demo · simulated cluster"), "{page}");
    let admin = Api::at(&demo.url, Some(&demo.token("admin")));
    let (_, clusters) = admin.get("/api/v1/clusters").await;
    let staging = clusters
        .as_array()
        .or_else(|| clusters["items"].as_array())
        .unwrap()
        .iter()
        .find(|c| c["name"] == "staging")
        .unwrap()["id"]
        .clone();
    let (_, cluster_page) = signed_in("admin")
        .await
        .get(&format!("/admin/clusters/{staging}"))
        .await;
    assert!(cluster_page.contains("data-simulated"), "{cluster_page}");

    // The tour: file, approve, a verified rolling stage, a canary with a
    // gate at each step, an owner's sign-off.
    let engineer = Api::at(&demo.url, Some(&demo.token("engineer")));
    let owner = Api::at(&demo.url, Some(&demo.token("owner")));
    let (_, items) = engineer.get("/api/v1/release-items").await;
    let checkout = items
        .as_array()
        .or_else(|| items["items"].as_array())
        .unwrap()
        .iter()
        .find(|i| i["name"] == "checkout")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let file = |version: &'static str| {
        let (engineer, owner) = (&engineer, &owner);
        async move {
            let (s, order) = engineer
                .post(
                    "/api/v1/work-orders",
                    json!({"release_item_id": checkout, "version": version, "title": format!("Ship {version}")}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{order}");
            let id = order["id"].as_i64().unwrap();
            let (s, v) = owner
                .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            id
        }
    };
    let deploy = |id: i64, n: u32| {
        let engineer = &engineer;
        async move {
            let (s, v) = engineer
                .post(
                    &format!("/api/v1/work-orders/{id}/stages/{n}/deploy"),
                    json!({}),
                )
                .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        }
    };
    let good = file("v1.2.0").await;
    deploy(good, 1).await;
    until(&engineer, good, 1, "succeeded", |s| {
        s["status"] == "succeeded"
    })
    .await;
    deploy(good, 2).await;
    until(&engineer, good, 2, "paused at step 1", |s| {
        s["status"] == "paused" && s["paused_step"] == 1
    })
    .await;
    let (s, v) = owner
        .post(
            &format!("/api/v1/work-orders/{good}/stages/2/approve-step"),
            json!({"step": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Steps 2 and 3 are timed: their gates pass and Rollway lets them go
    // on; then the soak time, then the owner's sign-off.
    until(&engineer, good, 2, "waited for a sign-off", |s| {
        s["verification"]["started_at"].is_i64()
    })
    .await;
    let (s, v) = owner
        .post(
            &format!("/api/v1/work-orders/{good}/stages/2/sign-off"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let done = until(&engineer, good, 2, "succeeded", |s| {
        matches!(
            s["status"].as_str(),
            Some("succeeded" | "failed" | "rolled_back")
        )
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let steps: std::collections::BTreeSet<i64> = done["verification"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3].into(), "a gate at each step: {done:#}");

    // The bad tag: its gate fails on staging, which rolls back by itself.
    let bad = file("v1.3.0-bad").await;
    deploy(bad, 1).await;
    let rolled_back = until(&engineer, bad, 1, "rolled back", |s| {
        s["status"] == "rolled_back"
    })
    .await;
    assert!(
        rolled_back["verification"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["verdict"] == "fail"),
        "{rolled_back:#}"
    );
}
