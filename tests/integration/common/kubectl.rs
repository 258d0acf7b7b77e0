//! kubectl against the simulated cluster: a kubeconfig and discovery cache
//! of its own per test, and a simulated cluster with fast ticks.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rollway::sim::{RunningSim, Sim, SimConfig};

/// kubectl with a kubeconfig and discovery cache of its own.
pub struct Kubectl {
    dir: tempfile::TempDir,
}

/// What one kubectl run printed.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(running: &RunningSim) -> Kubectl {
        Kubectl::with_kubeconfig(&running.kubeconfig())
    }

    pub fn with_kubeconfig(kubeconfig: &str) -> Kubectl {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("write kubeconfig");
        Kubectl { dir }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Runs kubectl and answers what it printed, whatever its exit status.
    pub async fn try_run(&self, args: &[&str]) -> Run {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("--request-timeout=30s")
            .args(args)
            .env("HOME", self.dir.path());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("kubectl thread")
            .unwrap_or_else(|e| {
                panic!("kubectl is needed for these tests ({e}); ./scripts/test installs it (Debian package kubernetes-client)")
            });
        Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs kubectl, failing the test unless it succeeds; answers stdout.
    pub async fn run(&self, args: &[&str]) -> String {
        let run = self.try_run(args).await;
        assert!(
            run.ok,
            "kubectl {} failed\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path
    }
}

pub async fn start() -> RunningSim {
    let config = SimConfig {
        tick: Duration::from_millis(20),
        ready_delay: Duration::from_millis(200),
        log_interval: Duration::from_millis(500),
    };
    Sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the simulated cluster")
}
