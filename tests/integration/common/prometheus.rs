//! A real Prometheus (Debian's `prometheus`, installed by `./scripts/test`)
//! scraping the simulated cluster's synthetic pod metrics every second:
//! started on a free loopback port with its own configuration and storage
//! in a temporary directory, stopped when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::eventually;

const BINARY: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `/sim/metrics` of the simulated cluster
    /// at `sim` and waits until it is ready.
    pub async fn start(sim: SocketAddr) -> Prometheus {
        assert!(
            Path::new(BINARY).exists(),
            "Debian's prometheus is not installed: run ./scripts/test (it installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: sim\n    metrics_path: /sim/metrics\n    \
                 static_configs:\n      - targets: ['{sim}']\n"
            ),
        )
        .unwrap();
        // A free port: bound, read and let go just before Prometheus takes it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let ready_url = format!("{}/-/ready", prometheus.url);
        let ready = eventually(Duration::from_secs(30), || async {
            reqwest::get(&ready_url)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "prometheus did not become ready at {ready_url}");
        prometheus
    }

    /// The instant vector of `query` now: (labels, value) per series.
    pub async fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .expect("query prometheus");
        let body: Value = resp.json().await.expect("a JSON answer");
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), value)
            })
            .collect()
    }
}
