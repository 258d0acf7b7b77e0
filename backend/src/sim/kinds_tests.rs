//! The kinds an ordinary app manifest has, driven over the in-process
//! router: ConfigMaps, Secrets, ServiceAccounts, each namespace's defaults,
//! Endpoints and EndpointSlices, the node, CustomResourceDefinitions and
//! self access reviews.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::kinds::Kind;
use super::{Sim, SimConfig};

fn fast() -> SimConfig {
    SimConfig {
        tick: Duration::from_millis(10),
        ready_delay: Duration::from_millis(50),
        log_interval: Duration::from_millis(100),
    }
}

/// Polls `check` until it answers `Some`, failing after 20 seconds.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request straight to the router: the status and the JSON answered
/// (`Null` for a body that is not JSON).
async fn raw(
    sim: &Sim,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let response = sim.router().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn post_json(sim: &Sim, path: &str, body: Value) -> (u16, Value) {
    raw(
        sim,
        Method::POST,
        path,
        "application/json",
        body.to_string().into_bytes(),
    )
    .await
}

#[tokio::test]
async fn secrets_keep_base64_data_merge_string_data_and_refuse_bad_base64() {
    let sim = Sim::new(fast());
    let (code, created) = post_json(
        &sim,
        "/api/v1/namespaces/default/secrets",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db"},
            "data": {"user": "YWRtaW4="},
            "stringData": {"password": "hunter2", "user": "root"},
        }),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    // stringData wins over data for the same key, is stored base64-encoded
    // and never answered.
    assert_eq!(
        created["data"],
        json!({"user": "cm9vdA==", "password": "aHVudGVyMg=="})
    );
    assert!(created.get("stringData").is_none());
    assert_eq!(created["type"], "Opaque");
    let stored: Secret = sim.get(Kind::Secret, "default", "db").unwrap();
    assert_eq!(stored.data.unwrap()["password"].0, b"hunter2");

    let (code, error) = post_json(
        &sim,
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "bad"}, "data": {"token": "not base64!"}}),
    )
    .await;
    assert_eq!(code, 400, "{error}");
    assert_eq!(
        error["message"],
        "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3"
    );
    assert!(sim.get::<Secret>(Kind::Secret, "default", "bad").is_none());

    let (code, error) = post_json(
        &sim,
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}),
    )
    .await;
    assert_eq!(code, 422, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("data[tls.key]: Required value")
    );
}

#[tokio::test]
async fn secret_data_wrapped_over_lines_is_read_as_go_reads_it() {
    // kustomize's secretGenerator writes a long value as a block of 70
    // characters a line; Go's base64 decoder skips the line breaks.
    let sim = Sim::new(fast());
    let (code, created) = post_json(
        &sim,
        "/api/v1/namespaces/default/secrets",
        json!({
            "metadata": {"name": "wrapped"},
            "data": {"key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMz\nQ1Njc4OWFiY2RlZg==\n"},
        }),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["data"]["key"],
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg=="
    );
    let stored: Secret = sim.get(Kind::Secret, "default", "wrapped").unwrap();
    assert_eq!(
        stored.data.unwrap()["key"].0,
        "0123456789abcdef".repeat(4).as_bytes()
    );

    let (code, error) = post_json(
        &sim,
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "bad"}, "data": {"key": "YWJj\nZA!="}}),
    )
    .await;
    assert_eq!(code, 400, "{error}");
    assert_eq!(
        error["message"],
        "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 7"
    );
}

#[tokio::test]
async fn secret_contents_never_reach_the_request_log() {
    let sim = Sim::new(fast());
    let api: Api<Secret> = Api::namespaced(Client::new(sim.router(), "default"), "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "stringData": {"token": "s3cr3t-token-value"},
        "data": {"key": "czNjcjN0LWtleS12YWx1ZQ=="},
    }))
    .unwrap();
    api.create(&PostParams::default(), &secret).await.unwrap();
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"stringData": {"more": "s3cr3t-patched"}})),
    )
    .await
    .unwrap();
    let configs: Api<ConfigMap> = Api::namespaced(Client::new(sim.router(), "default"), "default");
    let config: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "plain"}, "data": {"visible": "yes"}}))
            .unwrap();
    configs
        .create(&PostParams::default(), &config)
        .await
        .unwrap();

    let requests = sim.requests();
    let secret_writes: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/secrets") && r.method != "GET")
        .collect();
    assert_eq!(secret_writes.len(), 2);
    for record in &secret_writes {
        assert!(record.body.starts_with("<Secret body, "), "{}", record.body);
    }
    for record in &requests {
        for needle in ["s3cr3t", "czNjcjN0"] {
            assert!(
                !record.body.contains(needle),
                "{} logged {needle}",
                record.path
            );
        }
    }
    // Other bodies are still recorded.
    assert!(requests.iter().any(|r| r.body.contains("\"visible\"")));
}

#[tokio::test]
async fn config_map_keys_are_validated() {
    let sim = Sim::new(fast());
    let (code, error) = post_json(
        &sim,
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "bad"}, "data": {"no spaces": "x"}}),
    )
    .await;
    assert_eq!(code, 422, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("data[no spaces]")
    );
}

#[tokio::test]
async fn each_namespace_gets_its_default_service_account_and_root_ca() {
    let sim = Sim::new(fast());
    sim.create_namespace("team-a");
    let sa: ServiceAccount = eventually("the default service account", || {
        sim.get(Kind::ServiceAccount, "team-a", "default")
    })
    .await;
    assert_eq!(sa.metadata.namespace.as_deref(), Some("team-a"));
    let ca: ConfigMap = eventually("kube-root-ca.crt", || {
        sim.get(Kind::ConfigMap, "team-a", "kube-root-ca.crt")
    })
    .await;
    assert!(ca.data.unwrap().contains_key("ca.crt"));
    // The `default` namespace has its own.
    eventually("default's service account", || {
        sim.get::<ServiceAccount>(Kind::ServiceAccount, "default", "default")
    })
    .await;
}

#[tokio::test]
async fn the_node_is_registered_ready_with_the_cluster_version() {
    let sim = Sim::new(fast());
    let node: Node = eventually("sim-node-1", || sim.get(Kind::Node, "", "sim-node-1")).await;
    let status = node.status.unwrap();
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(
        status.node_info.unwrap().kubelet_version,
        super::discovery::SERVER_VERSION
    );
    assert_eq!(status.allocatable.unwrap()["pods"].0, "110");
    assert!(
        status
            .addresses
            .unwrap()
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == super::kubelet::NODE_IP)
    );
    // Pods name it.
    sim.create_deployment("default", "web", "app", "app:1", 1, 600);
    let pod: Pod = eventually("a pod", || sim.pods("default").into_iter().next()).await;
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("sim-node-1"));
}

fn deployment(name: &str, image: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "track": name}},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    })
}

fn ips(pods: &[Pod], ready: bool) -> Vec<String> {
    let mut ips: Vec<String> = pods
        .iter()
        .filter(|p| super::kubelet::is_ready(p) == ready)
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    ips
}

fn endpoint_ips(endpoints: &Endpoints, ready: bool) -> Vec<String> {
    let mut ips: Vec<String> = endpoints
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| {
            if ready {
                s.addresses.clone()
            } else {
                s.not_ready_addresses.clone()
            }
            .unwrap_or_default()
        })
        .map(|a| a.ip)
        .collect();
    ips.sort();
    ips
}

#[tokio::test]
async fn endpoints_and_slices_follow_the_pods_of_a_service() {
    let sim = Sim::new(fast());
    sim.faults().never_ready("broken");
    let (code, body) = post_json(
        &sim,
        "/api/v1/namespaces/default/services",
        json!({"metadata": {"name": "web", "labels": {"tier": "front"}},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    // No pods yet: an Endpoints without subsets and one empty slice.
    let empty: Endpoints = eventually("empty endpoints", || {
        sim.get(Kind::Endpoints, "default", "web")
    })
    .await;
    assert!(empty.subsets.is_none());
    post_json(
        &sim,
        "/apis/apps/v1/namespaces/default/deployments",
        deployment("good", "app:1", 2),
    )
    .await;
    post_json(
        &sim,
        "/apis/apps/v1/namespaces/default/deployments",
        deployment("bad", "broken:1", 1),
    )
    .await;

    let (endpoints, pods) = eventually("two ready and one unready address", || {
        let pods = sim.pods("default");
        let endpoints: Endpoints = sim.get(Kind::Endpoints, "default", "web")?;
        (ips(&pods, true).len() == 2
            && ips(&pods, false).len() == 1
            && endpoint_ips(&endpoints, true) == ips(&pods, true)
            && endpoint_ips(&endpoints, false) == ips(&pods, false))
        .then_some((endpoints, pods))
    })
    .await;
    assert_eq!(pods.len(), 3);
    let subset = &endpoints.subsets.as_ref().unwrap()[0];
    let port = &subset.ports.as_ref().unwrap()[0];
    // The named targetPort resolved against the container's ports.
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    assert_eq!(endpoints.metadata.labels.unwrap()["tier"], "front");
    let address = &subset.addresses.as_ref().unwrap()[0];
    assert_eq!(address.node_name.as_deref(), Some("sim-node-1"));
    assert_eq!(
        address.target_ref.as_ref().unwrap().kind.as_deref(),
        Some("Pod")
    );

    let slices: Vec<EndpointSlice> = sim.list(Kind::EndpointSlice, "default");
    assert_eq!(slices.len(), 1);
    let slice = &slices[0];
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    let slice_endpoints = slice.endpoints.clone().unwrap_or_default();
    let mut ready: Vec<String> = slice_endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().unwrap().ready == Some(true))
        .flat_map(|e| e.addresses.clone())
        .collect();
    ready.sort();
    assert_eq!(ready, ips(&pods, true));
    assert_eq!(slice_endpoints.len(), 3);
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));

    // Pods going away leave the endpoints.
    let (code, _) = raw(
        &sim,
        Method::DELETE,
        "/apis/apps/v1/namespaces/default/deployments/bad",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    eventually("the unready address to go", || {
        let endpoints: Endpoints = sim.get(Kind::Endpoints, "default", "web")?;
        endpoint_ips(&endpoints, false).is_empty().then_some(())
    })
    .await;

    // Deleting the Service deletes its Endpoints and slices.
    let (code, _) = raw(
        &sim,
        Method::DELETE,
        "/api/v1/namespaces/default/services/web",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    eventually("endpoints and slices to go", || {
        (sim.get::<Endpoints>(Kind::Endpoints, "default", "web")
            .is_none()
            && sim
                .list::<EndpointSlice>(Kind::EndpointSlice, "default")
                .is_empty())
        .then_some(())
    })
    .await;
}

fn crd() -> Value {
    let text = include_str!("../../../tests/fixtures/sim/rollouts-crd.yaml");
    serde_yaml::from_str(text).unwrap()
}

const ROLLOUTS: &str = "/apis/rollouts.kruise.io/v1beta1/namespaces/default/rollouts";
const ROLLOUTS_V1ALPHA1: &str = "/apis/rollouts.kruise.io/v1alpha1/namespaces/default/rollouts";

#[tokio::test]
async fn a_custom_resource_definition_serves_its_resource_until_deleted() {
    let sim = Sim::new(fast());
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    assert_eq!(
        raw(&sim, Method::GET, ROLLOUTS, "", Vec::new()).await.0,
        404
    );
    let (code, created) = post_json(&sim, crds, crd()).await;
    assert_eq!(code, 201, "{created}");
    let conditions: Vec<(String, String)> = created["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(conditions.contains(&("Established".into(), "True".into())));
    assert!(conditions.contains(&("NamesAccepted".into(), "True".into())));

    // Discovery.
    let (_, groups) = raw(&sim, Method::GET, "/apis", "", Vec::new()).await;
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "rollouts.kruise.io")
        .expect("the custom group in /apis")
        .clone();
    assert_eq!(group["preferredVersion"]["version"], "v1beta1");
    assert_eq!(group["versions"].as_array().unwrap().len(), 2);
    let (code, resources) = raw(
        &sim,
        Method::GET,
        "/apis/rollouts.kruise.io/v1alpha1",
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rollouts", "rollouts/status"]);

    // Created at one version, read at both.
    let (code, rollout) = post_json(
        &sim,
        ROLLOUTS_V1ALPHA1,
        json!({"apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": "web"}, "spec": {"workloadRef": {"kind": "Deployment", "name": "web"}}}),
    )
    .await;
    assert_eq!(code, 201, "{rollout}");
    assert_eq!(rollout["apiVersion"], "rollouts.kruise.io/v1alpha1");
    assert_eq!(rollout["metadata"]["generation"], 1);
    let (_, stored) = raw(
        &sim,
        Method::GET,
        &format!("{ROLLOUTS}/web"),
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(stored["apiVersion"], "rollouts.kruise.io/v1beta1");
    assert_eq!(stored["spec"]["workloadRef"]["name"], "web");
    let (_, list) = raw(&sim, Method::GET, ROLLOUTS_V1ALPHA1, "", Vec::new()).await;
    assert_eq!(
        list["items"][0]["apiVersion"],
        "rollouts.kruise.io/v1alpha1"
    );

    // Merge and JSON patch work; strategic merge is refused as on a real
    // server.
    let patch = |content_type: &'static str, body: Value| {
        let sim = sim.clone();
        async move {
            raw(
                &sim,
                Method::PATCH,
                &format!("{ROLLOUTS}/web"),
                content_type,
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let (code, _) = patch(
        "application/strategic-merge-patch+json",
        json!({"spec": {"paused": true}}),
    )
    .await;
    assert_eq!(code, 415);
    let (code, merged) = patch(
        "application/merge-patch+json",
        json!({"spec": {"paused": true}}),
    )
    .await;
    assert_eq!(code, 200, "{merged}");
    assert_eq!(merged["spec"]["paused"], true);
    assert_eq!(merged["metadata"]["generation"], 2);
    let (code, patched) = patch(
        "application/json-patch+json",
        json!([{"op": "replace", "path": "/spec/paused", "value": false}]),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["spec"]["paused"], false);

    // The status subresource owns status.
    let (code, with_status) = raw(
        &sim,
        Method::PATCH,
        &format!("{ROLLOUTS}/web/status"),
        "application/merge-patch+json",
        json!({"status": {"phase": "Healthy"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{with_status}");
    assert_eq!(with_status["status"]["phase"], "Healthy");
    let (_, ignored) = patch(
        "application/merge-patch+json",
        json!({"status": {"phase": "Lost"}}),
    )
    .await;
    assert_eq!(ignored["status"]["phase"], "Healthy");

    // Deleting a namespace deletes the custom objects in it.
    raw(
        &sim,
        Method::POST,
        "/api/v1/namespaces",
        "application/json",
        json!({"metadata": {"name": "team"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    let (code, _) = post_json(
        &sim,
        "/apis/rollouts.kruise.io/v1beta1/namespaces/team/rollouts",
        json!({"metadata": {"name": "doomed"}, "spec": {}}),
    )
    .await;
    assert_eq!(code, 201);
    raw(
        &sim,
        Method::DELETE,
        "/api/v1/namespaces/team",
        "application/json",
        Vec::new(),
    )
    .await;
    let (_, all) = raw(
        &sim,
        Method::GET,
        "/apis/rollouts.kruise.io/v1beta1/rollouts",
        "",
        Vec::new(),
    )
    .await;
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);

    // Deleting the definition deletes its objects and stops serving them.
    let (code, _) = raw(
        &sim,
        Method::DELETE,
        &format!("{crds}/rollouts.rollouts.kruise.io"),
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    let definitions = sim
        .world()
        .store
        .list(Kind::CustomResourceDefinition, None)
        .len();
    assert_eq!(definitions, 0);
    assert_eq!(
        raw(
            &sim,
            Method::GET,
            &format!("{ROLLOUTS}/web"),
            "",
            Vec::new()
        )
        .await
        .0,
        404
    );
    let (_, groups) = raw(&sim, Method::GET, "/apis", "", Vec::new()).await;
    assert!(!groups.to_string().contains("rollouts.kruise.io"));
    // Defining it again serves an empty resource: the old objects are gone.
    post_json(&sim, crds, crd()).await;
    let (code, list) = raw(&sim, Method::GET, ROLLOUTS, "", Vec::new()).await;
    assert_eq!(code, 200);
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn malformed_definitions_are_invalid() {
    let sim = Sim::new(fast());
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let mut wrong_name = crd();
    wrong_name["metadata"]["name"] = json!("rollouts.example.com");
    let (code, error) = post_json(&sim, crds, wrong_name).await;
    assert_eq!(code, 422);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("must be spec.names.plural+\".\"+spec.group")
    );
    let mut two_storage = crd();
    two_storage["spec"]["versions"][0]["storage"] = json!(true);
    let (code, error) = post_json(&sim, crds, two_storage).await;
    assert_eq!(code, 422);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("exactly one version marked as storage")
    );
    let mut builtin = crd();
    builtin["spec"]["group"] = json!("apps");
    builtin["metadata"]["name"] = json!("rollouts.apps");
    assert_eq!(post_json(&sim, crds, builtin).await.0, 422);
}

#[tokio::test]
async fn access_reviews_allow_everything_in_json_and_protobuf() {
    let sim = Sim::new(fast());
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, review) = post_json(
        &sim,
        path,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}}),
    )
    .await;
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["status"]["allowed"], true);
    assert_eq!(review["spec"]["resourceAttributes"]["resource"], "pods");

    // What kubectl sends: a protobuf envelope (magic, runtime.Unknown with
    // apiVersion and kind in field 1, the message in field 2) around
    // spec.resourceAttributes.
    fn bytes_field(number: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, u8::try_from(payload.len()).unwrap()];
        out.extend_from_slice(payload);
        out
    }
    let attributes = [bytes_field(2, b"delete"), bytes_field(5, b"secrets")].concat();
    let message = bytes_field(2, &bytes_field(1, &attributes));
    let type_meta = [
        bytes_field(1, b"authorization.k8s.io/v1"),
        bytes_field(2, b"SelfSubjectAccessReview"),
    ]
    .concat();
    let body = [
        b"k8s\0".to_vec(),
        bytes_field(1, &type_meta),
        bytes_field(2, &message),
    ]
    .concat();
    let (code, review) = raw(
        &sim,
        Method::POST,
        path,
        "application/vnd.kubernetes.protobuf",
        body,
    )
    .await;
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["spec"]["resourceAttributes"]["verb"], "delete");
    assert_eq!(review["spec"]["resourceAttributes"]["resource"], "secrets");
    assert_eq!(review["status"]["allowed"], true);

    let (code, _) = post_json(&sim, path, json!({"spec": {}})).await;
    assert_eq!(code, 422);
    assert_eq!(raw(&sim, Method::GET, path, "", Vec::new()).await.0, 405);

    let (code, rules) = post_json(
        &sim,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        json!({"spec": {"namespace": "default"}}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(rules["status"]["resourceRules"][0]["verbs"], json!(["*"]));
}

#[test]
fn node_tables_add_wide_columns_at_priority_one() {
    let node = json!({"kind": "Node", "metadata": super::kubelet::node_object()["metadata"].clone(),
                      "status": super::kubelet::node_object()["status"].clone()});
    let table = super::table::for_objects(&[node], None).unwrap();
    let columns: Vec<(&str, i64)> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        &columns[..5],
        [
            ("Name", 0),
            ("Status", 0),
            ("Roles", 0),
            ("Age", 0),
            ("Version", 0)
        ]
    );
    assert_eq!(columns[5], ("Internal-IP", 1));
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[1], "Ready");
    assert_eq!(cells[2], "control-plane");
    assert_eq!(cells[5], super::kubelet::NODE_IP);

    let secret = json!({"kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "", "b": ""}});
    let table = super::table::for_objects(&[secret], None).unwrap();
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["s", "Opaque", 2, "<unknown>"])
    );
}

#[tokio::test]
async fn pods_are_deleted_gracefully_and_removed_by_their_kubelet() {
    // Containers take a minute to stop on SIGTERM here: only the grace
    // period ends them sooner.
    let sim = Sim::new(SimConfig {
        ready_delay: Duration::from_secs(60),
        ..fast()
    });
    let pods = "/api/v1/namespaces/default/pods";
    for name in ["slow", "quick"] {
        let (code, _) = post_json(
            &sim,
            pods,
            json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}),
        )
        .await;
        assert_eq!(code, 201);
    }
    let pod = |name: &str| sim.world().store.get(Kind::Pod, "default", name).cloned();
    eventually("both pods running", || {
        ["slow", "quick"]
            .iter()
            .all(|n| pod(n).is_some_and(|p| p["status"]["phase"] == "Running"))
            .then_some(())
    })
    .await;

    // Deleted: marked with the pod's grace period, still there, stopping.
    let (code, answered) = raw(
        &sim,
        Method::DELETE,
        &format!("{pods}/slow"),
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200, "{answered}");
    assert_eq!(answered["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(answered["metadata"]["deletionTimestamp"].is_string());
    let killing = eventually("the kubelet stops the containers", || {
        sim.world()
            .store
            .list(Kind::Event, Some("default"))
            .into_iter()
            .find(|e| e["reason"] == "Killing" && e["involvedObject"]["name"] == "slow")
            .cloned()
    })
    .await;
    assert_eq!(killing["message"], "Stopping container app");
    let stopping = pod("slow").expect("still there while it stops");
    let table = super::table::for_objects(std::slice::from_ref(&stopping), None).unwrap();
    assert_eq!(table["rows"][0]["cells"][2], "Terminating");
    // A second delete may shorten the grace period, not lengthen it.
    let (_, longer) = raw(
        &sim,
        Method::DELETE,
        &format!("{pods}/slow?gracePeriodSeconds=300"),
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(longer["metadata"]["deletionGracePeriodSeconds"], 30);
    let (_, shorter) = raw(
        &sim,
        Method::DELETE,
        &format!("{pods}/slow"),
        "application/json",
        br#"{"gracePeriodSeconds": 1}"#.to_vec(),
    )
    .await;
    assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 1);
    eventually("the kubelet removes it when its grace period ends", || {
        pod("slow").is_none().then_some(())
    })
    .await;

    // A grace period of 0 removes it at once.
    let (code, _) = raw(
        &sim,
        Method::DELETE,
        &format!("{pods}/quick?gracePeriodSeconds=0"),
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    assert!(pod("quick").is_none());
    let (code, _) = raw(
        &sim,
        Method::DELETE,
        &format!("{pods}/quick?gracePeriodSeconds=soon"),
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(
        code, 400,
        "a grace period that is no number is refused first"
    );
}

#[tokio::test]
async fn node_port_and_load_balancer_services_get_node_ports_as_kubectl_shows_them() {
    let sim = Sim::new(fast());
    let services = "/api/v1/namespaces/default/services";
    let mut made = Vec::new();
    for (name, spec) in [
        (
            "np",
            json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 30001}]}),
        ),
        (
            "lb",
            json!({"type": "LoadBalancer", "ports": [{"port": 8443}]}),
        ),
        (
            "ext",
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
        ),
        ("plain", json!({"ports": [{"port": 80}]})),
    ] {
        let (code, service) = post_json(
            &sim,
            services,
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await;
        assert_eq!(code, 201, "{service}");
        made.push(service);
    }
    let node_ports: Vec<u64> = made
        .iter()
        .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["nodePort"].as_u64())
        .collect();
    assert_eq!(node_ports.len(), 3, "{node_ports:?}");
    assert!(node_ports.contains(&30001), "a node port asked for is kept");
    assert!(node_ports.iter().all(|p| (30000..=32767).contains(p)));
    let mut distinct = node_ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{node_ports:?}");
    assert_eq!(made[0]["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(made[1]["spec"]["allocateLoadBalancerNodePorts"], true);
    assert!(made[2]["spec"].get("clusterIP").is_none());
    assert!(made[3]["spec"]["ports"][0].get("nodePort").is_none());

    let table = super::table::for_objects(&made, None).unwrap();
    let cells = |row: usize| table["rows"][row]["cells"].clone();
    assert_eq!(
        cells(0)[4],
        format!(
            "80:{}/TCP,443:30001/TCP",
            made[0]["spec"]["ports"][0]["nodePort"]
        )
    );
    assert_eq!(cells(1)[3], "<pending>");
    assert_eq!(cells(2)[3], "db.example.com");
    assert_eq!(cells(2)[2], "<none>");
    assert_eq!(cells(3)[3], "<none>");
}
