//! The kinds an application's own install brings, driven over the
//! in-process router: PersistentVolumeClaims, ClusterRoles,
//! ClusterRoleBindings and PodDisruptionBudgets.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
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

/// One request straight to the router: the status and the JSON answered.
async fn request(sim: &Sim, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .unwrap();
    let response = sim.router().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn table_cells(object: Value) -> Value {
    let table = super::table::for_objects(&[object], None).unwrap();
    table["rows"][0]["cells"].clone()
}

#[tokio::test]
async fn a_claim_is_bound_at_once_to_a_volume_of_its_size() {
    let sim = Sim::new(fast());
    let (code, created) = request(
        &sim,
        Method::POST,
        "/api/v1/namespaces/default/persistentvolumeclaims",
        Some(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        })),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(created["spec"]["volumeName"], format!("pvc-{uid}"));
    assert_eq!(created["spec"]["storageClassName"], "standard");
    assert_eq!(created["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        created["status"],
        json!({"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}})
    );
    let stored: PersistentVolumeClaim = sim
        .get(Kind::PersistentVolumeClaim, "default", "data")
        .unwrap();
    assert_eq!(stored.status.unwrap().phase.as_deref(), Some("Bound"));

    let cells = table_cells(created);
    assert_eq!(cells[1], "Bound");
    assert_eq!(cells[2], format!("pvc-{uid}"));
    assert_eq!(
        (&cells[3], &cells[4], &cells[5], &cells[6], &cells[8]),
        (
            &json!("1Gi"),
            &json!("RWO"),
            &json!("standard"),
            &json!("<unset>"),
            &json!("Filesystem")
        )
    );

    let (code, error) = request(
        &sim,
        Method::POST,
        "/api/v1/namespaces/default/persistentvolumeclaims",
        Some(json!({"metadata": {"name": "bad"}, "spec": {"accessModes": ["WriteSometimes"]}})),
    )
    .await;
    assert_eq!(code, 422, "{error}");
    let fields: Vec<&str> = error["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["spec.accessModes", "spec.resources[storage]"]);
}

#[tokio::test]
async fn cluster_roles_and_bindings_are_cluster_scoped_and_checked() {
    let sim = Sim::new(fast());
    let base = "/apis/rbac.authorization.k8s.io/v1";
    let (code, role) = request(
        &sim,
        Method::POST,
        &format!("{base}/clusterroles"),
        Some(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}],
        })),
    )
    .await;
    assert_eq!(code, 201, "{role}");
    assert!(role["metadata"].get("namespace").is_none());
    let (code, _) = request(
        &sim,
        Method::GET,
        &format!("{base}/clusterroles/reader"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    // Cluster-scoped: there is no namespaced path.
    let (code, _) = request(
        &sim,
        Method::GET,
        &format!("{base}/namespaces/default/clusterroles/reader"),
        None,
    )
    .await;
    assert_eq!(code, 404);

    let (code, error) = request(
        &sim,
        Method::POST,
        &format!("{base}/clusterroles"),
        Some(json!({"metadata": {"name": "bad"}, "rules": [{"resources": ["pods"], "verbs": []}]})),
    )
    .await;
    assert_eq!(code, 422, "{error}");
    let fields: Vec<&str> = error["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["rules[0].verbs", "rules[0].apiGroups"]);

    let binding = |role_kind: &str, subject: Value| {
        json!({
            "metadata": {"name": "readers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": "reader"},
            "subjects": [subject],
        })
    };
    let (code, error) = request(
        &sim,
        Method::POST,
        &format!("{base}/clusterrolebindings"),
        Some(binding(
            "Role",
            json!({"kind": "ServiceAccount", "name": "ci"}),
        )),
    )
    .await;
    assert_eq!(code, 422, "{error}");
    let fields: Vec<&str> = error["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["roleRef.kind", "subjects[0].namespace"]);

    let (code, created) = request(
        &sim,
        Method::POST,
        &format!("{base}/clusterrolebindings"),
        Some(binding(
            "ClusterRole",
            json!({"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}),
        )),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let stored: ClusterRoleBinding = sim.get(Kind::ClusterRoleBinding, "", "readers").unwrap();
    assert_eq!(stored.role_ref.name, "reader");
    let cells = table_cells(created);
    assert_eq!(cells[1], "ClusterRole/reader");
    assert_eq!(cells[5], "tools/ci");
}

#[tokio::test]
async fn a_budget_counts_the_ready_pods_it_selects() {
    let sim = Sim::new(fast());
    let (code, body) = request(
        &sim,
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "web:1"}]},
                },
            },
        })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, created) = request(
        &sim,
        Method::POST,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        Some(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        })),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    // A budget that selects nothing says so at once.
    let (code, created) = request(
        &sim,
        Method::POST,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        Some(json!({
            "metadata": {"name": "nothing"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "none"}}},
        })),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    eventually("the empty budget's status", || {
        let budget: PodDisruptionBudget =
            sim.get(Kind::PodDisruptionBudget, "default", "nothing")?;
        let status = budget.status?;
        (status.observed_generation == Some(1)
            && status.desired_healthy == Some(1)
            && status.disruptions_allowed == Some(0))
        .then_some(())
    })
    .await;

    let status = eventually("the budget to count three ready pods", || {
        let budget: PodDisruptionBudget = sim.get(Kind::PodDisruptionBudget, "default", "web")?;
        let status = budget.status?;
        (status.current_healthy == Some(3)).then_some(status)
    })
    .await;
    assert_eq!(
        (
            status.expected_pods,
            status.desired_healthy,
            status.disruptions_allowed
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(status.observed_generation, Some(1));
    let condition = &status.conditions.unwrap()[0];
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str()),
        ("DisruptionAllowed", "True")
    );

    let stored: Value = serde_json::to_value(
        sim.get::<PodDisruptionBudget>(Kind::PodDisruptionBudget, "default", "web")
            .unwrap(),
    )
    .unwrap();
    let cells = table_cells(stored);
    assert_eq!(
        cells.as_array().unwrap()[..4],
        [json!("web"), json!("N/A"), json!("1"), json!(1)]
    );

    let (code, error) = request(
        &sim,
        Method::POST,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        Some(json!({
            "metadata": {"name": "both"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        })),
    )
    .await;
    assert_eq!(code, 422, "{error}");
}
