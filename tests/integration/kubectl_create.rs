//! kubectl's generators against the simulated cluster: `kubectl create
//! namespace|deployment|service|configmap|secret|serviceaccount|ingress|
//! clusterrole|clusterrolebinding|poddisruptionbudget`,
//! which kubectl 1.32 and later send as protobuf, with every kubectl the
//! tests run; what they stored, read back as kubectl reads it; and the
//! Events the controllers and the kubelet record on the way, as `kubectl
//! describe` and `kubectl get events` show them.

use crate::common::kubectl::{Binary, Kubectl, every_kubectl, start};

#[tokio::test]
async fn kubectl_create_generators_make_what_they_name() {
    every_kubectl(generators_make_what_they_name).await;
}

async fn generators_make_what_they_name(binary: Binary) {
    let running = start().await;
    let sim = running.sim.clone();
    let kubectl = Kubectl::with_binary(&running, &binary);
    let created = [
        (
            vec!["create", "namespace", "shop"],
            "namespace/shop created",
        ),
        (
            vec![
                "create",
                "deployment",
                "web",
                "--image=registry.example/web:1.0",
                "--replicas=2",
                "--port=8080",
            ],
            "deployment.apps/web created",
        ),
        (
            vec!["create", "service", "clusterip", "web", "--tcp=80:8080"],
            "service/web created",
        ),
        (
            vec![
                "create",
                "configmap",
                "settings",
                "--from-literal=mode=demo",
            ],
            "configmap/settings created",
        ),
        (
            vec![
                "create",
                "secret",
                "generic",
                "creds",
                "--from-literal=password=hunter2",
            ],
            "secret/creds created",
        ),
        (
            vec!["create", "serviceaccount", "deployer"],
            "serviceaccount/deployer created",
        ),
        (
            vec!["create", "ingress", "web", "--rule=shop.example/*=web:80"],
            "ingress.networking.k8s.io/web created",
        ),
        (
            vec![
                "create",
                "clusterrole",
                "reader",
                "--verb=get,list",
                "--resource=pods,deployments.apps",
            ],
            "clusterrole.rbac.authorization.k8s.io/reader created",
        ),
        (
            vec![
                "create",
                "clusterrolebinding",
                "readers",
                "--clusterrole=reader",
                "--serviceaccount=shop:deployer",
            ],
            "clusterrolebinding.rbac.authorization.k8s.io/readers created",
        ),
    ];
    let mut created = created.to_vec();
    // Older kubectls make policy/v1beta1 budgets, gone since Kubernetes 1.25.
    if binary.minor() >= (1, 25) {
        created.push((
            vec![
                "create",
                "poddisruptionbudget",
                "web",
                "--selector=app=web",
                "--min-available=1",
            ],
            "poddisruptionbudget.policy/web created",
        ));
    }
    let created_count = created.len();
    for (args, answer) in created {
        let mut args = args;
        if args[1] != "namespace" {
            args.extend(["--namespace", "shop"]);
        }
        let out = kubectl.run(&args).await;
        assert!(out.contains(answer), "kubectl {}: {out}", args.join(" "));
    }
    let out = kubectl
        .run(&[
            "wait",
            "--namespace",
            "shop",
            "--for=condition=Available",
            "deploy/web",
            "--timeout=60s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");

    let read = |what: &'static str, path: &'static str| {
        let kubectl = &kubectl;
        async move {
            let jsonpath = format!("jsonpath={path}");
            kubectl
                .run(&["get", "--namespace", "shop", what, "-o", &jsonpath])
                .await
        }
    };
    let d = sim
        .deployment("shop", "web")
        .expect("the deployment is stored");
    assert_eq!(d.spec.replicas, Some(2));
    let container = &d.spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.example/web:1.0"));
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8080);
    assert_eq!(read("svc/web", "{.spec.ports[0].targetPort}").await, "8080");
    assert_eq!(read("svc/web", "{.spec.selector.app}").await, "web");
    assert_eq!(read("svc/web", "{.spec.type}").await, "ClusterIP");
    assert_eq!(read("configmap/settings", "{.data.mode}").await, "demo");
    assert_eq!(
        read("secret/creds", "{.data.password}").await,
        "aHVudGVyMg=="
    );
    assert_eq!(
        read(
            "ingress/web",
            "{.spec.rules[0].http.paths[0].backend.service.name}"
        )
        .await,
        "web"
    );
    assert_eq!(
        read("ingress/web", "{.spec.rules[0].host}").await,
        "shop.example"
    );
    assert_eq!(read("sa/deployer", "{.metadata.name}").await, "deployer");
    assert_eq!(
        read("clusterrole/reader", "{.rules[1].apiGroups[0]}").await,
        "apps"
    );
    assert_eq!(
        read(
            "clusterrolebinding/readers",
            "{.roleRef.name} {.subjects[0].namespace}/{.subjects[0].name}"
        )
        .await,
        "reader shop/deployer"
    );
    if binary.minor() >= (1, 25) {
        assert_eq!(read("pdb/web", "{.spec.minAvailable}").await, "1");
    }
    // Nothing a generator leaves at Go's zero value shows up as a field.
    let spec = read("deploy/web", "{.spec}").await;
    assert!(!spec.contains("\"paused\""), "{spec}");
    assert!(!spec.contains("\"minReadySeconds\""), "{spec}");

    // The controllers' and the kubelet's Events, where kubectl shows them.
    let described = kubectl
        .run(&["describe", "--namespace", "shop", "deployment", "web"])
        .await;
    assert!(
        described.contains("ScalingReplicaSet")
            && described.contains("deployment-controller")
            && described.contains("Scaled up replica set web-")
            && described.contains("from 0 to 2"),
        "{described}"
    );
    // (By name: kubectl leaves Events out when it describes by selector.)
    let pod = read("pods", "{.items[0].metadata.name}").await;
    let described = kubectl
        .run(&["describe", "--namespace", "shop", "pod", &pod])
        .await;
    for shown in [
        "default-scheduler",
        "Successfully assigned shop/web-",
        "to sim-node-1",
        "Container image \"registry.example/web:1.0\" already present on machine",
        "Started container web",
    ] {
        assert!(described.contains(shown), "{shown} in:\n{described}");
    }
    let events = kubectl.run(&["get", "events", "--namespace", "shop"]).await;
    let header = events.lines().next().unwrap_or_default();
    for column in ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        events
            .lines()
            .any(|l| l.contains("SuccessfulCreate") && l.contains("replicaset/web-")),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l.contains("ScalingReplicaSet") && l.contains("deployment/web")),
        "{events}"
    );
    let started = kubectl
        .run(&[
            "get",
            "events",
            "--namespace",
            "shop",
            "--field-selector",
            "reason=Started",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(started.lines().count(), 2, "{started}");

    // kubectl 1.32 and later sent all of that as protobuf.
    let protobuf_creates = sim
        .requests()
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.content_type
                    .as_deref()
                    .is_some_and(|t| t.starts_with("application/vnd.kubernetes.protobuf"))
        })
        .count();
    if binary.minor() >= (1, 32) {
        assert_eq!(
            protobuf_creates, created_count,
            "kubectl {}",
            binary.version
        );
    }
    running.shutdown().await;
}
