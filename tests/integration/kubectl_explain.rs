//! What kubectl shows about the simulated cluster's objects beyond `get`:
//! `explain` (the published field documentation, over OpenAPI v3 and, for
//! older kubectl, v2 protobuf), `get -o wide` and `describe` with the
//! defaults a real API server fills in.

use serde_json::Value;

use crate::common::kubectl::{Binary, Kubectl, eventually_now, every_kubectl, start};

/// kubectl wraps descriptions at its terminal width: compare words.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The client's minor version (`20` for 1.20).
async fn client_minor(kubectl: &Kubectl) -> u32 {
    let version: Value =
        serde_json::from_str(&kubectl.run(&["version", "--client", "-o", "json"]).await)
            .expect("kubectl version JSON");
    version["clientVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .expect("client minor version")
}

/// The header and the rows of a `kubectl get` table, split on runs of two
/// or more spaces.
fn table(output: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let split = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let mut lines = output.lines().filter(|l| !l.trim().is_empty());
    let header = split(lines.next().unwrap_or_default());
    (header, lines.map(split).collect())
}

fn cell<'a>(header: &[String], row: &'a [String], column: &str) -> &'a str {
    let at = header
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    &row[at]
}

#[tokio::test]
async fn kubectl_explain_prints_the_published_field_documentation() {
    every_kubectl(explain_prints_the_published_field_documentation).await;
}

async fn explain_prints_the_published_field_documentation(binary: Binary) {
    let running = start().await;
    let kubectl = Kubectl::with_binary(&running, &binary);
    let minor = client_minor(&kubectl).await;
    // kubectl 1.27 and later read OpenAPI v3 and can be told to read v2;
    // older ones read only v2, as protobuf.
    let mut outputs: Vec<Vec<&str>> = vec![vec![]];
    if minor >= 27 {
        outputs.push(vec!["--output=plaintext-openapiv2"]);
    }
    for extra in outputs {
        let args = |path: &'static str| {
            let mut args = vec!["explain", path];
            args.extend(extra.iter().copied());
            args
        };
        let strategy = words(&kubectl.run(&args("deployment.spec.strategy")).await);
        assert!(
            strategy
                .contains("The deployment strategy to use to replace existing pods with new ones."),
            "{extra:?}: {strategy}"
        );
        assert!(strategy.contains("rollingUpdate"), "{extra:?}: {strategy}");

        let timeout = words(
            &kubectl
                .run(&args("pods.spec.containers.readinessProbe.timeoutSeconds"))
                .await,
        );
        assert!(
            timeout.contains(
                "Number of seconds after which the probe times out. Defaults to 1 second."
            ),
            "{extra:?}: {timeout}"
        );

        let ingress = words(
            &kubectl
                .run(&args("ingress.spec.rules.http.paths.pathType"))
                .await,
        );
        assert!(
            ingress.contains("pathType determines the interpretation of the path matching."),
            "{extra:?}: {ingress}"
        );

        let mut recursive = args("deployment");
        recursive.push("--recursive");
        let tree = kubectl.run(&recursive).await;
        for field in [
            "maxSurge",
            "readinessProbe",
            "terminationMessagePolicy",
            "revisionHistoryLimit",
        ] {
            assert!(tree.contains(field), "{extra:?}: no {field} in\n{tree}");
        }
    }
    // A field that does not exist is refused as on a real cluster.
    let missing = kubectl
        .try_run(&["explain", "deployment.spec.nosuchfield"])
        .await;
    assert!(!missing.ok, "{}", missing.stdout);
    assert!(missing.stderr.contains("nosuchfield"), "{}", missing.stderr);
}

#[tokio::test]
async fn kubectl_get_wide_shows_ip_node_containers_images_and_selector() {
    every_kubectl(get_wide_shows_ip_node_containers_images_and_selector).await;
}

async fn get_wide_shows_ip_node_containers_images_and_selector(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    sim.create_deployment("default", "web", "app", "registry.example/web:1", 2, 600);
    let pods = eventually_now("two running pods", || {
        let pods = sim.pods("default");
        let running = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
            .count();
        (running == 2).then_some(pods)
    })
    .await;
    let kubectl = Kubectl::with_binary(&running, &binary);

    let (header, rows) = table(&kubectl.run(&["get", "pods", "-o", "wide"]).await);
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(rows.len(), 2);
    for pod in &pods {
        let name = pod.metadata.name.as_deref().unwrap();
        let row = rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {rows:?}"));
        let ip = pod.status.as_ref().unwrap().pod_ip.as_deref().unwrap();
        assert_eq!(cell(&header, row, "IP"), ip);
        assert_eq!(cell(&header, row, "NODE"), "sim-node-1");
        assert_eq!(cell(&header, row, "NOMINATED NODE"), "<none>");
        assert_eq!(cell(&header, row, "READINESS GATES"), "<none>");
    }
    // Without -o wide the extra columns stay hidden.
    let (narrow, _) = table(&kubectl.run(&["get", "pods"]).await);
    assert_eq!(narrow, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);

    let (header, rows) = table(&kubectl.run(&["get", "deploy", "-o", "wide"]).await);
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(cell(&header, &rows[0], "IMAGES"), "registry.example/web:1");
    assert_eq!(cell(&header, &rows[0], "SELECTOR"), "app=web");
    assert!(!cell(&header, &rows[0], "CONTAINERS").is_empty());

    let (header, rows) = table(&kubectl.run(&["get", "rs", "-o", "wide"]).await);
    assert_eq!(cell(&header, &rows[0], "IMAGES"), "registry.example/web:1");
    assert!(cell(&header, &rows[0], "SELECTOR").starts_with("app=web,pod-template-hash="));
}

const PROBED: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: probed
spec:
  replicas: 1
  selector:
    matchLabels:
      app: probed
  template:
    metadata:
      labels:
        app: probed
    spec:
      containers:
      - name: app
        image: registry.example/probed:1
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
        livenessProbe:
          tcpSocket:
            port: 8080
          initialDelaySeconds: 5
        resources:
          limits:
            cpu: 100m
            memory: 64Mi
";

#[tokio::test]
async fn kubectl_describe_shows_the_defaults_a_real_api_server_fills_in() {
    every_kubectl(describe_shows_the_defaults_a_real_api_server_fills_in).await;
}

async fn describe_shows_the_defaults_a_real_api_server_fills_in(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    let kubectl = Kubectl::with_binary(&running, &binary);
    let manifest = kubectl.write("probed.yaml", PROBED);
    kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    eventually_now("the probed pod", || {
        sim.pods("default")
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
    })
    .await;

    let pod = words(&kubectl.run(&["describe", "pod", "-l", "app=probed"]).await);
    // Newer kubectls spell the thresholds out (1.37 does; 1.33 and older,
    // all checked, print the short form).
    let thresholds = if binary.minor() >= (1, 34) {
        "successThreshold=1 failureThreshold=3"
    } else {
        "#success=1 #failure=3"
    };
    assert!(
        pod.contains(&format!(
            "Readiness: http-get http://:8080/healthz delay=0s timeout=1s period=10s {thresholds}"
        )),
        "{pod}"
    );
    assert!(
        pod.contains(&format!(
            "Liveness: tcp-socket :8080 delay=5s timeout=1s period=10s {thresholds}"
        )),
        "{pod}"
    );
    // Requests default to the limits, which makes the pod Guaranteed.
    assert!(pod.contains("QoS Class: Guaranteed"), "{pod}");
    assert!(pod.contains("Requests: cpu: 100m memory: 64Mi"), "{pod}");
    assert!(
        pod.contains("node.kubernetes.io/not-ready:NoExecute op=Exists for 300s"),
        "{pod}"
    );
    // (kubectl 1.20's describe does not print the service account.)
    let account = kubectl
        .run(&[
            "get",
            "pod",
            "-l",
            "app=probed",
            "-o",
            "jsonpath={.items[0].spec.serviceAccountName}",
        ])
        .await;
    assert_eq!(account, "default");

    let deployment = words(&kubectl.run(&["describe", "deployment", "probed"]).await);
    assert!(
        deployment.contains("StrategyType: RollingUpdate"),
        "{deployment}"
    );
    assert!(
        deployment.contains("RollingUpdateStrategy: 25% max unavailable, 25% max surge"),
        "{deployment}"
    );
    assert!(
        deployment.contains(&format!(
            "Readiness: http-get http://:8080/healthz delay=0s timeout=1s period=10s {thresholds}"
        )),
        "{deployment}"
    );
}
