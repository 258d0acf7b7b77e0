//! `deploy/` for Rollway itself: the kustomize overlays render with
//! `kubectl kustomize` and apply to the simulated cluster with every
//! kubectl (`apply -k`, or `apply -f` of the newest one's rendering for a
//! kubectl whose kustomize is too old; their pods come up); the Deployment listens and probes where
//! the binary serves; the ClusterRole grants exactly what the Kubernetes
//! driver calls; the Containerfile runs `rollway serve` as a non-root user
//! and exposes the ports it listens on.
//!
//! The overlays use kustomize v5 (`labels`, `patches`, components), which
//! kubectl embeds since 1.27: they are rendered by the newest kubectl of
//! [`kubectls`] (Debian's 1.20 embeds kustomize 2.0.3, which cannot read
//! them), and what it renders is applied with every kubectl.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::bin;
use crate::common::kubectl::{Binary, Kubectl, eventually, every_kubectl, kubectls, start};

const OVERLAYS: [Overlay; 3] = [
    Overlay {
        name: "sqlite",
        replicas: 1,
        ingress: false,
    },
    Overlay {
        name: "postgres",
        replicas: 3,
        ingress: false,
    },
    Overlay {
        name: "sqlite",
        replicas: 1,
        ingress: true,
    },
];

/// An overlay as a user would apply it: with the Ingress component added
/// to its kustomization when `ingress` (README "Deploying Rollway").
#[derive(Debug, Clone, Copy)]
struct Overlay {
    name: &'static str,
    replicas: usize,
    ingress: bool,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The newest kubectl, whose kustomize renders the overlays.
fn newest_kubectl() -> Binary {
    let newest = kubectls()
        .into_iter()
        .max_by_key(Binary::minor)
        .expect("a kubectl");
    assert!(
        newest.minor() >= (1, 27),
        "rendering deploy/kubernetes needs a kubectl with kustomize v5 (1.27 or later); the newest here is {}",
        newest.version
    );
    newest
}

/// Copies `src` into `dst`, directories and files.
fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `deploy/kubernetes` copied into a temporary directory with each
/// overlay's `secrets.env` filled in as the README says; answers the
/// directory and the overlay's path in it.
fn prepared(overlay: Overlay) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("kubernetes");
    copy_tree(&repo_root().join("deploy/kubernetes"), &tree);
    let key = "0123456789abcdef".repeat(4);
    std::fs::write(
        tree.join("overlays/sqlite/secrets.env"),
        format!("secret-key={key}\nadmin-password=change-me-please\n"),
    )
    .unwrap();
    std::fs::write(
        tree.join("overlays/postgres/secrets.env"),
        format!(
            "secret-key={key}\ndatabase-url=postgres://rollway:pw@postgres.rollway:5432/rollway\n"
        ),
    )
    .unwrap();
    let path = tree.join("overlays").join(overlay.name);
    if overlay.ingress {
        let kustomization = path.join("kustomization.yaml");
        let mut text = std::fs::read_to_string(&kustomization).unwrap();
        text.push_str("\ncomponents:\n  - ../../components/ingress\n");
        std::fs::write(&kustomization, text).unwrap();
    }
    (dir, path)
}

/// `kubectl kustomize` of the overlay, by `binary`.
fn render_with(binary: &Binary, overlay: Overlay) -> String {
    let (_dir, path) = prepared(overlay);
    let output = std::process::Command::new(&binary.path)
        .arg("kustomize")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl {} kustomize {overlay:?} failed: {}",
        binary.version,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn render(overlay: Overlay) -> String {
    render_with(&newest_kubectl(), overlay)
}

/// The rendered documents, as JSON.
fn documents(rendered: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(rendered)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// The port of an address like `0.0.0.0:8080`.
fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{address} names no port"))
}

/// What `rollway serve --help` says: each flag's environment variable and
/// default, by variable.
fn serve_help() -> BTreeMap<String, Option<String>> {
    let output = std::process::Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    // clap prints `[env: NAME=]` then `[default: VALUE]` at the end of each
    // option's text; the text may wrap, so read the whole help as one line.
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut variables = BTreeMap::new();
    for (at, _) in flat.match_indices("[env: ") {
        let rest = &flat[at + "[env: ".len()..];
        let name = rest.split(['=', ']']).next().unwrap().to_string();
        let after = &rest[rest.find(']').unwrap() + 1..];
        let default = after
            .trim_start()
            .strip_prefix("[default: ")
            .and_then(|d| d.split(']').next())
            .map(String::from);
        variables.insert(name, default);
    }
    variables
}

#[test]
fn the_overlays_render_with_every_kubectl_that_embeds_kustomize_v5() {
    let mut rendered_with = Vec::new();
    for binary in kubectls().into_iter().filter(|b| b.minor() >= (1, 27)) {
        for overlay in OVERLAYS {
            let docs = documents(&render_with(&binary, overlay));
            assert_eq!(
                find(&docs, "Deployment")["spec"]["replicas"],
                overlay.replicas,
                "{overlay:?}"
            );
        }
        rendered_with.push(binary.version);
    }
    assert!(!rendered_with.is_empty(), "no kubectl with kustomize v5");
}

#[tokio::test]
async fn kubectl_applies_every_overlay_to_the_simulated_cluster_and_its_pods_come_up() {
    let rendered: Vec<(Overlay, String)> = OVERLAYS.iter().map(|o| (*o, render(*o))).collect();
    every_kubectl(move |binary| {
        let rendered = rendered.clone();
        async move {
            for (overlay, manifest) in rendered {
                applies_and_comes_up(&binary, overlay, &manifest).await;
            }
        }
    })
    .await;
}

async fn applies_and_comes_up(binary: &Binary, overlay: Overlay, manifest: &str) {
    let running = start().await;
    let kubectl = Kubectl::with_binary(&running, binary);
    // As the README says (`apply -k`) with a kubectl whose kustomize reads
    // the overlays; older ones apply what the newest rendered.
    let file = kubectl.write("rollway.yaml", manifest);
    let (_dir, overlay_dir) = prepared(overlay);
    let apply: Vec<&str> = if binary.minor() >= (1, 27) {
        vec!["apply", "-k", overlay_dir.to_str().unwrap()]
    } else {
        vec!["apply", "-f", file.to_str().unwrap()]
    };
    let out = kubectl.run(&apply).await;
    let mut expected = vec![
        "namespace/rollway created",
        "serviceaccount/rollway created",
        "clusterrole.rbac.authorization.k8s.io/rollway created",
        "clusterrolebinding.rbac.authorization.k8s.io/rollway created",
        "service/rollway created",
        "deployment.apps/rollway created",
    ];
    match overlay.name {
        "sqlite" => expected.push("persistentvolumeclaim/rollway-data created"),
        _ => expected.push("poddisruptionbudget.policy/rollway created"),
    }
    if overlay.ingress {
        expected.push("ingress.networking.k8s.io/rollway created");
    }
    for line in expected {
        assert!(out.contains(line), "{overlay:?}: {out}");
    }
    assert!(out.contains("secret/rollway-"), "{out}");
    assert!(out.contains("configmap/rollway-"), "{out}");

    // Applied again, nothing is made anew and the Deployment stays as it
    // is. Two read "configured", as on a real cluster: the Secret, whose
    // long base64 values kustomize wraps over lines and the API server
    // stores unwrapped, and the PodDisruptionBudget, whose selector's
    // patch strategy is `replace`, which kubectl always sends.
    let again = kubectl.run(&apply).await;
    assert!(
        again.lines().all(|l| l.ends_with(" unchanged")
            || l.starts_with("secret/")
            || l.starts_with("poddisruptionbudget.policy/")),
        "{overlay:?}: {again}"
    );
    assert!(
        again.contains("deployment.apps/rollway unchanged"),
        "{overlay:?}: {again}"
    );

    // The Deployment rolls out: every replica Ready in the simulated
    // cluster (which runs any image).
    kubectl
        .run(&[
            "rollout",
            "status",
            "-n",
            "rollway",
            "deployment/rollway",
            "--timeout=60s",
        ])
        .await;
    let pods = kubectl
        .run(&[
            "get",
            "pods",
            "-n",
            "rollway",
            "-l",
            "app.kubernetes.io/name=rollway",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(
        pods.lines().count(),
        overlay.replicas,
        "{overlay:?}: {pods}"
    );

    let binding = kubectl
        .run(&["get", "clusterrolebinding", "rollway", "-o", "wide"])
        .await;
    assert!(binding.contains("ClusterRole/rollway"), "{binding}");
    assert!(binding.contains("rollway/rollway"), "{binding}");
    let role = kubectl
        .run(&[
            "get",
            "clusterrole",
            "rollway",
            "-o",
            "jsonpath={.rules[*].resources}",
        ])
        .await;
    assert!(role.contains("rollouts/status"), "{role}");

    if overlay.name == "sqlite" {
        let claim = kubectl
            .run(&[
                "get",
                "pvc",
                "-n",
                "rollway",
                "rollway-data",
                "-o",
                "jsonpath={.status.phase}",
            ])
            .await;
        assert_eq!(claim, "Bound");
        let table = kubectl.run(&["get", "pvc", "-n", "rollway"]).await;
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header[..5],
            ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS"],
            "{table}"
        );
        assert!(
            table.contains(" Bound ") && table.contains(" 1Gi "),
            "{table}"
        );
        let strategy = kubectl
            .run(&[
                "get",
                "deployment",
                "-n",
                "rollway",
                "rollway",
                "-o",
                "jsonpath={.spec.strategy.type}",
            ])
            .await;
        assert_eq!(strategy, "Recreate");
    } else {
        let kubectl = &kubectl;
        eventually("the budget to allow one disruption", || async move {
            let allowed = kubectl
                .run(&[
                    "get",
                    "pdb",
                    "-n",
                    "rollway",
                    "rollway",
                    "-o",
                    "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}",
                ])
                .await;
            (allowed == "3/1").then_some(())
        })
        .await;
        let table = kubectl.run(&["get", "pdb", "-n", "rollway"]).await;
        assert!(table.contains("ALLOWED DISRUPTIONS"), "{table}");
        assert!(
            table.lines().nth(1).is_some_and(|row| row
                .split_whitespace()
                .take(4)
                .eq(["rollway", "N/A", "1", "1"])),
            "{table}"
        );
    }
    if overlay.ingress {
        let backend = kubectl
            .run(&[
                "get",
                "ingress",
                "-n",
                "rollway",
                "rollway",
                "-o",
                "jsonpath={.spec.rules[0].http.paths[0].backend.service.name}",
            ])
            .await;
        assert_eq!(backend, "rollway");
    }
}

#[test]
fn the_deployment_listens_and_probes_where_the_binary_serves() {
    let help = serve_help();
    let default_listen = help
        .get("ROLLWAY_LISTEN")
        .cloned()
        .flatten()
        .expect("serve --help gives ROLLWAY_LISTEN a default");
    assert!(help.contains_key("ROLLWAY_METRICS_LISTEN"), "{help:?}");
    assert!(help.contains_key("ROLLWAY_DATABASE_URL"), "{help:?}");
    // Read by `serve` itself, not flags (cli.rs).
    let cli = read("backend/src/cli.rs");
    let mut known: BTreeSet<String> = help.keys().cloned().collect();
    for variable in ["ROLLWAY_SECRET_KEY", "ROLLWAY_ADMIN_PASSWORD"] {
        assert!(cli.contains(&format!("\"{variable}\"")), "{variable}");
        known.insert(variable.to_string());
    }

    let page_routes: Vec<String> = rollway::http::routes()
        .listed()
        .iter()
        .filter(|(method, _)| method == axum::http::Method::GET)
        .map(|(_, path)| path.to_string())
        .collect();
    let handle = axum_prometheus::metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let metrics_routes: Vec<String> = rollway::http::metrics_routes(handle)
        .listed()
        .iter()
        .map(|(_, path)| path.to_string())
        .collect();
    assert_eq!(metrics_routes, ["/metrics"]);

    for overlay in OVERLAYS {
        let docs = documents(&render(overlay));
        let deployment = find(&docs, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["args"], serde_json::json!(["serve"]));
        let env: BTreeMap<&str, &Value> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e))
            .collect();
        let config = find(&docs, "ConfigMap");
        // Every variable the pod gets is one the binary reads.
        let given: Vec<&str> = env
            .keys()
            .copied()
            .chain(
                config["data"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str),
            )
            .collect();
        for variable in given {
            assert!(
                known.contains(variable),
                "{overlay:?}: {variable} is not read by rollway serve"
            );
        }
        let ports: BTreeMap<&str, u64> = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["containerPort"].as_u64().unwrap(),
                )
            })
            .collect();
        let listen = env["ROLLWAY_LISTEN"]["value"].as_str().unwrap();
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{listen}: reachable from the kubelet and the Service"
        );
        assert_eq!(u64::from(port_of(listen)), ports["http"], "{overlay:?}");
        assert_eq!(
            port_of(listen),
            port_of(&default_listen),
            "the binary's default port"
        );
        let metrics = env["ROLLWAY_METRICS_LISTEN"]["value"].as_str().unwrap();
        assert_eq!(u64::from(port_of(metrics)), ports["metrics"], "{overlay:?}");

        // Liveness and readiness (and startup) on the main listener, on
        // the page routes that answer them.
        for (probe, path) in [
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"], path, "{overlay:?} {probe}");
            assert_eq!(get["port"], "http", "{overlay:?} {probe}");
            assert!(
                page_routes.iter().any(|r| r == path),
                "{path} is not served"
            );
        }

        // The Service reaches both ports by name.
        let service = find(&docs, "Service");
        let targets: BTreeSet<&str> = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["targetPort"].as_str().unwrap())
            .collect();
        assert_eq!(targets, BTreeSet::from(["http", "metrics"]));

        // Secrets by reference, from the generated Secret.
        let secret = find(&docs, "Secret");
        let secret_name = secret["metadata"]["name"].as_str().unwrap();
        let key_ref = &env["ROLLWAY_SECRET_KEY"]["valueFrom"]["secretKeyRef"];
        assert_eq!(key_ref["name"], secret_name);
        assert!(secret["data"]["secret-key"].is_string());
        let database = env["ROLLWAY_DATABASE_URL"];
        match overlay.name {
            "postgres" => {
                let url_ref = &database["valueFrom"]["secretKeyRef"];
                assert_eq!(
                    (url_ref["name"].as_str(), url_ref["key"].as_str()),
                    (Some(secret_name), Some("database-url"))
                );
                assert_eq!(deployment["spec"]["replicas"], 3);
                assert_eq!(
                    find(&docs, "PodDisruptionBudget")["spec"]["maxUnavailable"],
                    1
                );
            }
            _ => {
                // The SQLite file on the claim mounted at the data directory.
                let url = database["value"].as_str().unwrap();
                let file = url.strip_prefix("sqlite://").unwrap();
                let mount = container["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == "data")
                    .unwrap();
                let data_dir = mount["mountPath"].as_str().unwrap();
                assert_eq!(Path::new(file).parent(), Some(Path::new(data_dir)));
                let volume = pod["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == "data")
                    .unwrap();
                assert_eq!(
                    volume["persistentVolumeClaim"]["claimName"],
                    find(&docs, "PersistentVolumeClaim")["metadata"]["name"]
                );
                assert_eq!(deployment["spec"]["replicas"], 1);
                assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
            }
        }

        // Non-root, read-only, no capabilities; the in-cluster token mounted.
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["serviceAccountName"], "rollway");
        assert_ne!(pod["automountServiceAccountToken"], false);
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        for bound in ["requests", "limits"] {
            assert!(
                container["resources"][bound]["memory"].is_string(),
                "{bound}"
            );
        }
        let subject = &find(&docs, "ClusterRoleBinding")["subjects"][0];
        assert_eq!(subject["namespace"], deployment["metadata"]["namespace"]);
    }
}

/// `(api group, resource, verb)` the ClusterRole grants.
fn granted(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    grants.insert((
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                        verb.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    grants
}

/// The string literals in `text`.
fn literals(text: &str) -> Vec<&str> {
    text.split('"').skip(1).step_by(2).collect()
}

/// The arguments of each call of `function` in `text`, up to the first
/// closing parenthesis.
fn calls_of<'a>(text: &'a str, function: &str) -> Vec<&'a str> {
    text.match_indices(function)
        .map(|(at, _)| {
            let args = &text[at + function.len()..];
            &args[..args.find(')').unwrap_or(args.len())]
        })
        .collect()
}

/// `(api group, resource, verb)` the Kubernetes driver calls, read from
/// its source: every call names its verb and resource in its span
/// (`Target::new("patch", "deployments")`), a Service or Ingress is read
/// through `exists::<K>("services", …)`, and the shared watches list and
/// watch their resource (`shared_watch(…, "deployments", …)`).
fn called() -> BTreeSet<(String, String, String)> {
    let group_of = |resource: &str| match resource.split('/').next().unwrap() {
        "deployments" | "replicasets" => "apps",
        "pods" | "services" => "",
        "ingresses" => "networking.k8s.io",
        "rollouts" => "rollouts.kruise.io",
        other => panic!("the driver calls {other}: which API group is it in?"),
    };
    let mut calls = BTreeSet::new();
    let mut add = |verb: &str, resource: &str| {
        calls.insert((
            group_of(resource).to_string(),
            resource.to_string(),
            verb.to_string(),
        ));
    };
    let mut sources = 0;
    for entry in std::fs::read_dir(repo_root().join("backend/src/kube")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        sources += 1;
        for args in calls_of(&text, "Target::new(") {
            // `Target::new("get", plural)`: the plural is `exists`'s.
            let [verb, resource] = literals(args)[..] else {
                continue;
            };
            match (verb, resource) {
                // Discovery: open to every authenticated account.
                (_, "version" | "apiresources") => {}
                ("logs" | "follow", "pods") => add("get", "pods/log"),
                ("replace", resource) => add("update", resource),
                (verb, resource) => add(verb, resource),
            }
        }
        for args in calls_of(&text, ".exists::<") {
            add("get", literals(args)[0]);
        }
        for args in calls_of(&text, "shared_watch(") {
            if let Some(resource) = literals(args).first() {
                add("list", resource);
                add("watch", resource);
            }
        }
    }
    assert!(sources >= 4, "backend/src/kube holds the driver");
    calls
}

#[test]
fn the_cluster_role_grants_exactly_what_the_kubernetes_driver_calls() {
    let docs = documents(&render(OVERLAYS[0]));
    let granted = granted(find(&docs, "ClusterRole"));
    let called = called();
    let missing: Vec<_> = called.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&called).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "deploy/kubernetes/base/clusterrole.yaml\n  lacks (group, resource, verb) the driver calls: {missing:?}\n  grants what no call needs: {unused:?}"
    );
}

#[test]
fn the_containerfile_runs_serve_as_a_non_root_user_on_the_listening_ports() {
    let containerfile = read("deploy/Containerfile");
    // Continuation lines joined, comments dropped.
    let joined = containerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let build = &lines[stages[0]..*stages.last().unwrap()];
    let runtime = &lines[*stages.last().unwrap()..];
    assert!(build[0].contains("rust:"), "{}", build[0]);
    assert!(
        build
            .iter()
            .any(|l| l.contains("cargo build --release --locked -p rollway")),
        "{build:?}"
    );
    let instruction = |name: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .collect()
    };

    // A numeric, non-root user: runAsNonRoot can check it without a passwd.
    let user = instruction("USER");
    assert_eq!(user.len(), 1, "{runtime:?}");
    let uid: u32 = user[0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0);
    let docs = documents(&render(OVERLAYS[0]));
    let pod = &find(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["runAsUser"], uid,
        "the manifests run the image's user"
    );

    // ENTRYPOINT and CMD together run `rollway serve`.
    let exec_form = |name: &str| -> Vec<String> {
        let found = instruction(name);
        assert_eq!(found.len(), 1, "one {name}");
        serde_json::from_str(found[0]).unwrap_or_else(|_| panic!("{name} in exec form"))
    };
    let mut command = exec_form("ENTRYPOINT");
    command.extend(exec_form("CMD"));
    assert!(command[0].ends_with("/rollway"), "{command:?}");
    assert_eq!(command[1..], ["serve"]);

    // EXPOSE: the ports the image's ROLLWAY_LISTEN and
    // ROLLWAY_METRICS_LISTEN name, the listener's being the binary's
    // default port.
    let exposed: BTreeSet<u16> = instruction("EXPOSE")
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(|p| p.split('/').next().unwrap().parse().unwrap())
        .collect();
    let env: BTreeMap<&str, &str> = instruction("ENV")
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let listen = port_of(env["ROLLWAY_LISTEN"]);
    let metrics = port_of(env["ROLLWAY_METRICS_LISTEN"]);
    assert_eq!(exposed, BTreeSet::from([listen, metrics]));
    let default_listen = serve_help()["ROLLWAY_LISTEN"].clone().unwrap();
    assert_eq!(listen, port_of(&default_listen));
    assert!(env["ROLLWAY_LISTEN"].starts_with("0.0.0.0:"));

    // The SQLite default is in the data directory, the working directory.
    let database = env["ROLLWAY_DATABASE_URL"];
    let workdir = instruction("WORKDIR");
    assert_eq!(
        Path::new(database.strip_prefix("sqlite://").unwrap()).parent(),
        Some(Path::new(workdir[0]))
    );

    // What the build stage copies exists, and the ignore file lets it in.
    let ignore = read(".dockerignore");
    for source in build
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|l| {
            let mut words: Vec<&str> = l.split_whitespace().collect();
            words.pop();
            words
        })
    {
        assert!(repo_root().join(source).exists(), "COPY {source}");
        assert!(
            ignore
                .lines()
                .any(|l| l == format!("!{source}") || l == format!("!{source}/")),
            ".dockerignore lets {source} in"
        );
    }
}
