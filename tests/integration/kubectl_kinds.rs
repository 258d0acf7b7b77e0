//! The kinds an ordinary app manifest has, through the real `kubectl`
//! against the simulated cluster: ConfigMap, Secret and ServiceAccount
//! applied with a Deployment and a Service, the Service's endpoints, the
//! node, a CustomResourceDefinition and its resource, and `auth can-i`.

use k8s_openapi::api::core::v1::Pod;
use rollway::sim::Kind;
use serde_json::Value;

use crate::common::kubectl::{Binary, Kubectl, eventually, every_kubectl, start};

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  LOG_LEVEL: info
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
data:
  api-key: c2VjcmV0LWtleQ==
stringData:
  password: hunter2
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      serviceAccountName: web
      containers:
      - name: app
        image: registry.example/web:1
        ports:
        - {name: http, containerPort: 8080}
        envFrom:
        - configMapRef: {name: web-config}
        - secretRef: {name: web-secret}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
"#;

const ROLLOUT: &str = r#"
apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata:
  name: web
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
"#;

fn ready_ips(pods: &[Pod]) -> Vec<String> {
    let mut ips: Vec<String> = pods
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    ips
}

#[tokio::test]
async fn kubectl_applies_an_app_manifest_and_endpoints_list_the_ready_pods() {
    every_kubectl(applies_an_app_manifest_and_endpoints_list_the_ready_pods).await;
}

async fn applies_an_app_manifest_and_endpoints_list_the_ready_pods(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    let kubectl = Kubectl::with_binary(&running, &binary);
    let manifest = kubectl.write("app.yaml", APP);
    let out = kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    for line in [
        "configmap/web-config created",
        "secret/web-secret created",
        "serviceaccount/web created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(out.contains(line), "{out}");
    }

    // The Secret: base64 data (stringData merged in), no stringData.
    let yaml = kubectl
        .run(&["get", "secret", "web-secret", "-o", "yaml"])
        .await;
    let secret: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(secret["data"]["api-key"], "c2VjcmV0LWtleQ==");
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "Opaque");
    assert!(secret.get("stringData").is_none(), "{yaml}");
    let table = kubectl.run(&["get", "secret", "web-secret"]).await;
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAME", "TYPE", "DATA", "AGE"]),
        "{table}"
    );
    assert!(table.contains("web-secret   Opaque   2"), "{table}");

    // Every namespace has its default ServiceAccount and root CA ConfigMap.
    let accounts = kubectl.run(&["get", "sa", "-o", "name"]).await;
    assert!(accounts.contains("serviceaccount/default"), "{accounts}");
    assert!(accounts.contains("serviceaccount/web"), "{accounts}");
    let configs = kubectl.run(&["get", "configmaps"]).await;
    assert!(configs.contains("kube-root-ca.crt"), "{configs}");
    assert!(
        configs
            .lines()
            .any(|l| l.split_whitespace().eq(["NAME", "DATA", "AGE"]))
    );

    // The Service's endpoints are the ready pods' IPs, on the named port.
    let (ips, pods) = eventually("the endpoints to list both ready pods", || {
        let kubectl = &kubectl;
        let sim = sim.clone();
        async move {
            let pods = sim.pods("default");
            let want = ready_ips(&pods);
            if want.len() != 2 {
                return None;
            }
            let got = kubectl
                .run(&[
                    "get",
                    "endpoints",
                    "web",
                    "-o",
                    "jsonpath={.subsets[*].addresses[*].ip}",
                ])
                .await;
            let mut got: Vec<String> = got.split_whitespace().map(String::from).collect();
            got.sort();
            (got == want).then_some((got, pods))
        }
    })
    .await;
    assert_eq!(pods.len(), 2);
    let port = kubectl
        .run(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].ports[0].port}",
        ])
        .await;
    assert_eq!(port, "8080");
    let listed = kubectl.run(&["get", "endpoints", "web"]).await;
    for ip in &ips {
        assert!(listed.contains(&format!("{ip}:8080")), "{listed}");
    }
    let slices = kubectl
        .run(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        ])
        .await;
    let slices: Value = serde_json::from_str(&slices).unwrap();
    let mut slice_ips: Vec<String> = slices["items"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["conditions"]["ready"] == true)
        .map(|e| e["addresses"][0].as_str().unwrap().to_string())
        .collect();
    slice_ips.sort();
    assert_eq!(slice_ips, ips);

    // Applying again changes nothing that is not the Secret's stringData
    // (which kubectl re-sends every time, as against a real cluster).
    let again = kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
    assert!(again.contains("configmap/web-config unchanged"), "{again}");
}

#[tokio::test]
async fn kubectl_get_nodes_shows_sim_node_1_ready() {
    every_kubectl(get_nodes_shows_sim_node_1_ready).await;
}

async fn get_nodes_shows_sim_node_1_ready(binary: Binary) {
    let running = start().await;
    let kubectl = Kubectl::with_binary(&running, &binary);
    let nodes = eventually("the node to register", || {
        let kubectl = &kubectl;
        async move {
            let out = kubectl.run(&["get", "nodes"]).await;
            out.contains("sim-node-1").then_some(out)
        }
    })
    .await;
    let mut lines = nodes.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAME", "STATUS", "ROLES", "AGE", "VERSION"]),
        "{nodes}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "sim-node-1");
    assert_eq!(row[1], "Ready");
    assert_eq!(row[4], "v1.33.0");
    let wide = kubectl.run(&["get", "nodes", "-o", "wide"]).await;
    assert!(
        wide.lines().next().unwrap().contains("INTERNAL-IP"),
        "{wide}"
    );
    assert!(wide.contains("10.0.0.10"), "{wide}");
    assert!(wide.contains("containerd://"), "{wide}");
    let version = kubectl.run(&["version", "-o", "json"]).await;
    let version: Value = serde_json::from_str(&version).unwrap();
    let kubelet = kubectl
        .run(&[
            "get",
            "node",
            "sim-node-1",
            "-o",
            "jsonpath={.status.nodeInfo.kubeletVersion}",
        ])
        .await;
    assert_eq!(version["serverVersion"]["gitVersion"], kubelet.as_str());
}

#[tokio::test]
async fn kubectl_applies_a_crd_then_its_resource_until_the_crd_is_deleted() {
    every_kubectl(applies_a_crd_then_its_resource_until_the_crd_is_deleted).await;
}

async fn applies_a_crd_then_its_resource_until_the_crd_is_deleted(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    let kubectl = Kubectl::with_binary(&running, &binary);
    let crd = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/sim/rollouts-crd.yaml"
    );
    let out = kubectl.run(&["apply", "-f", crd]).await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/rollouts.rollouts.kruise.io created"
        ),
        "{out}"
    );
    let established = kubectl
        .run(&[
            "get",
            "crd",
            "rollouts.rollouts.kruise.io",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ])
        .await;
    assert_eq!(established, "True");

    let rollout = kubectl.write("rollout.yaml", ROLLOUT);
    let out = kubectl
        .run(&["apply", "-f", rollout.to_str().unwrap()])
        .await;
    assert!(
        out.contains("rollout.rollouts.kruise.io/web created"),
        "{out}"
    );
    let status = r#"{"status":{"phase":"Healthy","canaryStatus":{"currentStepIndex":2},"conditions":[{"type":"Progressing","status":"False"},{"type":"Ready","status":"True"}]}}"#;
    kubectl
        .patch_rollout_status(&running, &binary, status)
        .await;
    // The definition's printer columns.
    let listed = kubectl.run(&["get", "rollouts.rollouts.kruise.io"]).await;
    let mut lines = listed.lines();
    assert!(
        lines.next().unwrap().split_whitespace().eq([
            "NAME",
            "STATUS",
            "CANARY_STEP",
            "READY",
            "AGE"
        ]),
        "{listed}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "Healthy", "2", "True"], "{listed}");
    // A version without printer columns prints Name and Age.
    let plain = kubectl
        .run(&["get", "rollouts.v1alpha1.rollouts.kruise.io"])
        .await;
    assert!(
        plain
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAME", "AGE"]),
        "{plain}"
    );
    // The short name and the other served version reach the same object.
    let at_v1alpha1 = kubectl
        .run(&[
            "get",
            "rollouts.v1alpha1.rollouts.kruise.io",
            "web",
            "-o",
            "jsonpath={.apiVersion}",
        ])
        .await;
    assert_eq!(at_v1alpha1, "rollouts.kruise.io/v1alpha1");
    let by_short_name = kubectl.run(&["get", "ro", "-o", "name"]).await;
    assert_eq!(by_short_name.trim(), "rollout.rollouts.kruise.io/web");
    let refused = kubectl
        .try_run(&[
            "patch",
            "ro",
            "web",
            "--type=strategic",
            "-p",
            r#"{"spec":{"paused":true}}"#,
        ])
        .await;
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains("the body of the request was in an unknown format"),
        "{}",
        refused.stderr
    );
    kubectl
        .run(&[
            "patch",
            "ro",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"paused":true}}"#,
        ])
        .await;

    let out = kubectl
        .run(&["delete", "crd", "rollouts.rollouts.kruise.io"])
        .await;
    assert!(out.contains("deleted"), "{out}");
    assert!(
        sim.get::<Value>(
            Kind::CustomResourceDefinition,
            "",
            "rollouts.rollouts.kruise.io"
        )
        .is_none()
    );
    let gone = kubectl
        .try_run(&[
            "get",
            "--raw",
            "/apis/rollouts.kruise.io/v1beta1/namespaces/default/rollouts",
        ])
        .await;
    assert!(!gone.ok, "{}", gone.stdout);
    assert!(
        gone.stderr.contains("NotFound") || gone.stderr.contains("could not find"),
        "{}",
        gone.stderr
    );
    let groups = kubectl.run(&["get", "--raw", "/apis"]).await;
    assert!(!groups.contains("rollouts.kruise.io"), "{groups}");
    // Defined again, the resource starts empty: the old object went with
    // its definition.
    kubectl.run(&["apply", "-f", crd]).await;
    let again = kubectl
        .run(&[
            "get",
            "--raw",
            "/apis/rollouts.kruise.io/v1beta1/namespaces/default/rollouts",
        ])
        .await;
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["items"], serde_json::json!([]));
}

#[tokio::test]
async fn kubectl_auth_can_i_answers_yes() {
    every_kubectl(auth_can_i_answers_yes).await;
}

async fn auth_can_i_answers_yes(binary: Binary) {
    let running = start().await;
    let kubectl = Kubectl::with_binary(&running, &binary);
    assert_eq!(
        kubectl.run(&["auth", "can-i", "get", "pods"]).await.trim(),
        "yes"
    );
    assert_eq!(
        kubectl
            .run(&["auth", "can-i", "delete", "secrets", "-n", "kube-system"])
            .await
            .trim(),
        "yes"
    );
    let list = kubectl.run(&["auth", "can-i", "--list"]).await;
    assert!(list.lines().any(|l| l.starts_with("*.*")), "{list}");
}
