//! kubectl against the simulated cluster: a kubeconfig and discovery cache
//! of its own per test, a simulated cluster with fast ticks, and the
//! kubectls to run every scenario with. Users bring any kubectl, so the
//! tests run the one on PATH, Debian's 1.20 (`target/kubectl/debian`) and
//! the newest from PyPI (`target/kubectl/pypi`), both installed by
//! `./scripts/test`; `ROLLWAY_TEST_KUBECTLS` (paths separated by `:`)
//! replaces that list.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rollway::sim::{RunningSim, Sim, SimConfig};

/// One kubectl executable and the version it reports.
#[derive(Debug, Clone)]
pub struct Binary {
    pub path: PathBuf,
    /// `v1.20.2`, `v1.37.1`, …
    pub version: String,
}

impl Binary {
    /// `(major, minor)`: `(1, 20)` for `v1.20.2`.
    pub fn minor(&self) -> (u32, u32) {
        let mut parts = self
            .version
            .trim_start_matches('v')
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// The version of the kubectl at `path`, or why there is none.
    fn probe(path: &Path) -> Result<Binary, String> {
        let output = Command::new(path)
            .args(["version", "--client", "-o", "json"])
            .output()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
            format!(
                "{} did not report its version ({e}): {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        let version = report["clientVersion"]["gitVersion"]
            .as_str()
            .ok_or_else(|| format!("{} reported no gitVersion", path.display()))?;
        Ok(Binary {
            path: path.to_path_buf(),
            version: version.to_string(),
        })
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `./scripts/test` puts Debian's kubectl.
pub fn debian_kubectl() -> PathBuf {
    repo_root().join("target/kubectl/debian/usr/bin/kubectl")
}

/// Where `./scripts/test` puts PyPI's kubectl.
pub fn pypi_kubectl() -> PathBuf {
    repo_root().join("target/kubectl/pypi/bin/kubectl")
}

/// The kubectl on PATH, if any.
fn path_kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())
}

/// The kubectls to test, one per version: `ROLLWAY_TEST_KUBECTLS`, or the
/// one on PATH with Debian's and PyPI's. Panics, naming `./scripts/test`,
/// when one of those two is missing.
pub fn kubectls() -> Vec<Binary> {
    let candidates: Vec<PathBuf> = match std::env::var("ROLLWAY_TEST_KUBECTLS") {
        Ok(list) if !list.trim().is_empty() => std::env::split_paths(&list).collect(),
        _ => {
            let mut candidates: Vec<PathBuf> = path_kubectl().into_iter().collect();
            candidates.push(debian_kubectl());
            candidates.push(pypi_kubectl());
            candidates
        }
    };
    let mut binaries: Vec<Binary> = Vec::new();
    for candidate in candidates {
        let binary = Binary::probe(&candidate).unwrap_or_else(|e| {
            panic!(
                "kubectl {} is needed for these tests ({e}); ./scripts/test installs Debian's and PyPI's under target/kubectl",
                candidate.display()
            )
        });
        if !binaries.iter().any(|b| b.version == binary.version) {
            binaries.push(binary);
        }
    }
    binaries
}

/// Runs `scenario` once per kubectl of [`kubectls`], all at once; fails
/// naming every kubectl version whose run failed.
pub async fn every_kubectl<F, Fut>(scenario: F)
where
    F: Fn(Binary) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut runs = tokio::task::JoinSet::new();
    for binary in kubectls() {
        let version = binary.version.clone();
        let run = scenario(binary);
        runs.spawn(async move { (version, tokio::spawn(run).await) });
    }
    let mut failures = Vec::new();
    while let Some(joined) = runs.join_next().await {
        let (version, result) = joined.expect("kubectl scenario task");
        if let Err(error) = result {
            let message = match error.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()),
                Err(error) => error.to_string(),
            };
            failures.push(format!("with kubectl {version}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// kubectl with a kubeconfig and discovery cache of its own.
pub struct Kubectl {
    dir: tempfile::TempDir,
    binary: PathBuf,
    pub version: String,
}

/// What one kubectl run printed.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// The kubectl on PATH.
    pub fn new(running: &RunningSim) -> Kubectl {
        Kubectl::with_kubeconfig(&running.kubeconfig())
    }

    /// A given kubectl.
    pub fn with_binary(running: &RunningSim, binary: &Binary) -> Kubectl {
        let mut kubectl = Kubectl::with_kubeconfig(&running.kubeconfig());
        kubectl.binary = binary.path.clone();
        kubectl.version = binary.version.clone();
        kubectl
    }

    pub fn with_kubeconfig(kubeconfig: &str) -> Kubectl {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("write kubeconfig");
        Kubectl {
            dir,
            binary: PathBuf::from("kubectl"),
            version: String::new(),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The executable this runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Runs kubectl and answers what it printed, whatever its exit status.
    pub async fn try_run(&self, args: &[&str]) -> Run {
        let mut command = Command::new(&self.binary);
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("--request-timeout=30s")
            .args(args)
            .env("HOME", self.dir.path());
        let binary = self.binary.display().to_string();
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("kubectl thread")
            .unwrap_or_else(|e| {
                panic!("kubectl ({binary}) is needed for these tests ({e}); ./scripts/test installs the kubectls they run")
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
            "kubectl {} ({}) failed\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            self.version,
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Merge-patches the status subresource of Rollout `default/web` with
    /// `body`: `kubectl patch --subresource=status`, or the API directly
    /// for kubectls older than 1.24, which cannot patch a subresource.
    pub async fn patch_rollout_status(&self, running: &RunningSim, binary: &Binary, body: &str) {
        if binary.minor() >= (1, 24) {
            self.run(&[
                "patch",
                "rollouts.rollouts.kruise.io",
                "web",
                "--subresource=status",
                "--type=merge",
                "-p",
                body,
            ])
            .await;
            return;
        }
        let answer = reqwest::Client::new()
            .patch(format!(
                "{}/apis/rollouts.kruise.io/v1beta1/namespaces/default/rollouts/web/status",
                running.url()
            ))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
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

/// Polls `check` (which may run kubectl) until it answers `Some`, failing
/// after 30 seconds.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for a check that does not wait.
pub async fn eventually_now<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    eventually(what, || std::future::ready(check())).await
}
