//! What the API server does to an object before storing it: decode it as
//! its typed k8s-openapi struct (unknown fields dropped, bad shapes refused),
//! fill in the defaults kubectl and controllers expect, and validate the
//! rules clients rely on (a Deployment's selector must match its template).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, Namespace, NamespaceSpec, Pod, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, Toleration,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::kinds::Kind;
use super::selector::LabelQuery;
use super::status::ApiError;
use super::{cluster_kinds, core_kinds, crd};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Secret, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Validation failures: `(field path, message)`.
type Causes = Vec<(String, String)>;

/// Decodes, defaults and validates an object of `kind`; answers the stored
/// JSON form.
pub fn normalize(kind: Kind, mut object: Value) -> Result<Value, ApiError> {
    if kind == Kind::Secret {
        object = super::core_kinds::prepare_secret(object)?;
    }
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    };
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != kind.api_version() => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                kind.api_version()
            )));
        }
        _ => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != kind.kind() => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind()
            )));
        }
        _ => {}
    }
    map.insert("apiVersion".into(), kind.api_version().into());
    map.insert("kind".into(), kind.kind().into());
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("selfLink");
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut causes = Causes::new();
    if name.is_empty() {
        causes.push((
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        ));
    } else if !is_dns_subdomain(&name) {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    }
    let result = match kind {
        Kind::Namespace => typed::<Namespace>(kind, object, &mut causes, default_namespace),
        Kind::Deployment => typed::<Deployment>(kind, object, &mut causes, default_deployment),
        Kind::ReplicaSet => typed::<ReplicaSet>(kind, object, &mut causes, default_replica_set),
        Kind::Pod => typed::<Pod>(kind, object, &mut causes, default_pod),
        Kind::Service => typed::<Service>(kind, object, &mut causes, default_service),
        Kind::Ingress => typed::<Ingress>(kind, object, &mut causes, |_, _| {}),
        Kind::Event => {
            typed::<k8s_openapi::api::core::v1::Event>(kind, object, &mut causes, |_, _| {})
        }
        Kind::EventV1 => {
            typed::<k8s_openapi::api::events::v1::Event>(kind, object, &mut causes, |_, _| {})
        }
        Kind::ConfigMap => {
            typed::<ConfigMap>(kind, object, &mut causes, core_kinds::check_config_map)
        }
        Kind::Secret => typed::<Secret>(kind, object, &mut causes, core_kinds::check_secret),
        Kind::ServiceAccount => typed::<ServiceAccount>(kind, object, &mut causes, |_, _| {}),
        Kind::Endpoints => typed::<Endpoints>(kind, object, &mut causes, |_, _| {}),
        Kind::EndpointSlice => typed::<EndpointSlice>(kind, object, &mut causes, |_, _| {}),
        Kind::Node => typed::<Node>(kind, object, &mut causes, |_, _| {}),
        Kind::CustomResourceDefinition => {
            typed::<CustomResourceDefinition>(kind, object, &mut causes, crd::check_definition)
        }
        Kind::SelfSubjectAccessReview | Kind::SelfSubjectRulesReview => Ok(object),
        Kind::PersistentVolumeClaim => {
            typed::<PersistentVolumeClaim>(kind, object, &mut causes, cluster_kinds::check_claim)
        }
        Kind::ClusterRole => {
            typed::<ClusterRole>(kind, object, &mut causes, cluster_kinds::check_cluster_role)
        }
        Kind::ClusterRoleBinding => typed::<ClusterRoleBinding>(
            kind,
            object,
            &mut causes,
            cluster_kinds::check_cluster_role_binding,
        ),
        Kind::PodDisruptionBudget => {
            typed::<PodDisruptionBudget>(kind, object, &mut causes, cluster_kinds::check_budget)
        }
        Kind::Custom(_) => crd::normalize_object(object),
    }?;
    if causes.is_empty() {
        Ok(result)
    } else {
        Err(ApiError::invalid(kind, &name, &causes))
    }
}

fn typed<K: DeserializeOwned + Serialize>(
    kind: Kind,
    object: Value,
    causes: &mut Causes,
    fix: impl FnOnce(&mut K, &mut Causes),
) -> Result<Value, ApiError> {
    let mut typed: K = serde_json::from_value(object).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            kind.kind(),
            kind.version(),
            kind.kind()
        ))
    })?;
    fix(&mut typed, causes);
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn default_namespace(ns: &mut Namespace, _: &mut Causes) {
    let name = ns.metadata.name.clone().unwrap_or_default();
    ns.metadata
        .labels
        .get_or_insert_default()
        .insert("kubernetes.io/metadata.name".into(), name);
    let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
    spec.finalizers
        .get_or_insert_with(|| vec!["kubernetes".into()]);
}

fn percent(value: &str) -> IntOrString {
    IntOrString::String(value.into())
}

fn default_deployment(d: &mut Deployment, causes: &mut Causes) {
    let spec = &mut d.spec;
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    let strategy_type = strategy
        .type_
        .get_or_insert_with(|| "RollingUpdate".into())
        .clone();
    if strategy_type == "RollingUpdate" {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        rolling.max_surge.get_or_insert_with(|| percent("25%"));
        rolling
            .max_unavailable
            .get_or_insert_with(|| percent("25%"));
    } else if strategy_type == "Recreate" {
        if strategy.rolling_update.is_some() {
            causes.push((
                "spec.strategy.rollingUpdate".into(),
                "Forbidden: may not be specified when strategy `type` is 'Recreate'".into(),
            ));
        }
    } else {
        causes.push((
            "spec.strategy.type".into(),
            format!("Unsupported value: \"{strategy_type}\": supported values: \"Recreate\", \"RollingUpdate\""),
        ));
    }
    if spec.replicas.is_some_and(|r| r < 0) {
        causes.push((
            "spec.replicas".into(),
            "Invalid value: must be greater than or equal to 0".into(),
        ));
    }
    check_selector(&spec.selector, Some(&spec.template), causes);
    default_template(&mut spec.template, causes);
}

fn default_replica_set(rs: &mut ReplicaSet, causes: &mut Causes) {
    rs.spec.replicas.get_or_insert(1);
    check_selector(&rs.spec.selector, rs.spec.template.as_ref(), causes);
    if let Some(template) = rs.spec.template.as_mut() {
        default_template(template, causes);
    }
}

fn check_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    template: Option<&PodTemplateSpec>,
    causes: &mut Causes,
) {
    let query = LabelQuery::from_selector(selector);
    if query.0.is_empty() {
        causes.push((
            "spec.selector".into(),
            "Invalid value: empty selector is invalid for deployment".into(),
        ));
        return;
    }
    let labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if !query.matches(&labels) {
        causes.push((
            "spec.template.metadata.labels".into(),
            format!("Invalid value: {labels:?}: `selector` does not match template `labels`"),
        ));
    }
}

fn default_template(template: &mut PodTemplateSpec, causes: &mut Causes) {
    match template.spec.as_mut() {
        Some(spec) => default_pod_spec(spec, "spec.template.spec", causes),
        None => causes.push((
            "spec.template.spec.containers".into(),
            "Required value".into(),
        )),
    }
}

/// The pod defaults the API server fills in (kubectl shows them, and
/// templates sent back by `kubectl rollout undo` carry them).
pub fn default_pod_spec(spec: &mut PodSpec, field: &str, causes: &mut Causes) {
    if spec.containers.is_empty() {
        causes.push((format!("{field}.containers"), "Required value".into()));
    }
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(Default::default);
    let containers = spec.containers.iter_mut().map(|c| ("containers", c)).chain(
        spec.init_containers
            .iter_mut()
            .flatten()
            .map(|c| ("initContainers", c)),
    );
    for (i, (list, container)) in containers.enumerate() {
        if container.name.is_empty() {
            causes.push((format!("{field}.{list}[{i}].name"), "Required value".into()));
        }
        let image = container.image.clone().unwrap_or_default();
        if image.trim().is_empty() {
            causes.push((
                format!("{field}.{list}[{i}].image"),
                "Required value".into(),
            ));
        }
        container.image_pull_policy.get_or_insert_with(|| {
            let tag = image.rsplit('/').next().unwrap_or_default();
            match tag.split_once(':') {
                Some((_, "latest")) | None if !tag.contains('@') => "Always".into(),
                _ => "IfNotPresent".into(),
            }
        });
        container
            .termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        container
            .termination_message_policy
            .get_or_insert_with(|| "File".into());
        container
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        for port in container.ports.iter_mut().flatten() {
            port.protocol.get_or_insert_with(|| "TCP".into());
        }
        default_container_handlers(container);
    }
    for volume in spec.volumes.iter_mut().flatten() {
        // A volume without a source is an emptyDir; projected files get
        // mode 0644 unless told otherwise.
        let has_source = serde_json::to_value(&*volume)
            .ok()
            .and_then(|v| v.as_object().map(|m| m.len() > 1))
            .unwrap_or(true);
        if !has_source {
            volume.empty_dir = Some(Default::default());
        }
        if let Some(secret) = volume.secret.as_mut() {
            secret.default_mode.get_or_insert(0o644);
        }
        if let Some(config_map) = volume.config_map.as_mut() {
            config_map.default_mode.get_or_insert(0o644);
        }
        if let Some(projected) = volume.projected.as_mut() {
            projected.default_mode.get_or_insert(0o644);
        }
        if let Some(downward) = volume.downward_api.as_mut() {
            downward.default_mode.get_or_insert(0o644);
        }
    }
}

/// Probe and lifecycle-hook defaults (Kubernetes' `SetDefaults_Probe`,
/// `SetDefaults_HTTPGetAction`, `SetDefaults_ObjectFieldSelector`): what
/// `kubectl describe` shows as `delay=0s timeout=1s period=10s #success=1
/// #failure=3`.
fn default_container_handlers(container: &mut Container) {
    fn http_get(action: &mut HTTPGetAction) {
        action.path.get_or_insert_with(|| "/".into());
        action.scheme.get_or_insert_with(|| "HTTP".into());
    }
    fn probe(probe: &mut Probe) {
        probe.timeout_seconds.get_or_insert(1);
        probe.period_seconds.get_or_insert(10);
        probe.success_threshold.get_or_insert(1);
        probe.failure_threshold.get_or_insert(3);
        if let Some(action) = probe.http_get.as_mut() {
            http_get(action);
        }
        if let Some(grpc) = probe.grpc.as_mut() {
            grpc.service.get_or_insert_with(String::new);
        }
    }
    for p in [
        container.liveness_probe.as_mut(),
        container.readiness_probe.as_mut(),
        container.startup_probe.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        probe(p);
    }
    if let Some(lifecycle) = container.lifecycle.as_mut() {
        for handler in [lifecycle.post_start.as_mut(), lifecycle.pre_stop.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(action) = handler.http_get.as_mut() {
                http_get(action);
            }
        }
    }
    for env in container.env.iter_mut().flatten() {
        if let Some(field) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            field.api_version.get_or_insert_with(|| "v1".into());
        }
    }
}

/// A pod gets, besides the defaults of every pod spec, what Kubernetes
/// fills in for pods only (`SetDefaults_Pod`: requests from limits,
/// service links) and what its default admission plugins add: the
/// `default` service account, priority 0, five minutes of toleration of
/// a not-ready or unreachable node.
fn default_pod(pod: &mut Pod, causes: &mut Causes) {
    let Some(spec) = pod.spec.as_mut() else {
        causes.push(("spec.containers".into(), "Required value".into()));
        return;
    };
    default_pod_spec(spec, "spec", causes);
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for container in containers {
        let resources = container
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        if let Some(limits) = resources.limits.clone() {
            let requests = resources.requests.get_or_insert_default();
            for (name, quantity) in limits {
                requests.entry(name).or_insert(quantity);
            }
        }
    }
    spec.enable_service_links.get_or_insert(true);
    if spec.service_account_name.is_none() {
        spec.service_account_name = Some(
            spec.service_account
                .clone()
                .unwrap_or_else(|| "default".into()),
        );
    }
    spec.service_account
        .get_or_insert_with(|| spec.service_account_name.clone().unwrap_or_default());
    if spec.priority_class_name.is_none() {
        spec.priority.get_or_insert(0);
    }
    spec.preemption_policy
        .get_or_insert_with(|| "PreemptLowerPriority".into());
    let tolerations = spec.tolerations.get_or_insert_default();
    for taint in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(taint)
                && matches!(t.effect.as_deref(), None | Some("" | "NoExecute"))
        });
        if !tolerated {
            tolerations.push(Toleration {
                key: Some(taint.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(300),
                ..Default::default()
            });
        }
    }
}

/// A pod's QoS class: `Guaranteed` when every container's CPU and memory
/// requests equal its limits, `BestEffort` when no container asks for or
/// limits anything, else `Burstable`.
pub fn qos_class(spec: &PodSpec) -> String {
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let resources = |c: &Container| c.resources.clone().unwrap_or_default();
    let empty = containers.iter().all(|c| {
        let r = resources(c);
        r.requests.unwrap_or_default().is_empty() && r.limits.unwrap_or_default().is_empty()
    });
    if empty {
        return "BestEffort".into();
    }
    let guaranteed = containers.iter().all(|c| {
        let r = resources(c);
        let (requests, limits) = (r.requests.unwrap_or_default(), r.limits.unwrap_or_default());
        ["cpu", "memory"]
            .iter()
            .all(|k| limits.contains_key(*k) && limits.get(*k) == requests.get(*k))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
    .into()
}

fn default_service(service: &mut Service, _: &mut Causes) {
    let spec = service.spec.get_or_insert_with(Default::default);
    spec.type_.get_or_insert_with(|| "ClusterIP".into());
    spec.session_affinity.get_or_insert_with(|| "None".into());
    spec.internal_traffic_policy
        .get_or_insert_with(|| "Cluster".into());
    spec.ip_families.get_or_insert_with(|| vec!["IPv4".into()]);
    spec.ip_family_policy
        .get_or_insert_with(|| "SingleStack".into());
    if matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
        spec.external_traffic_policy
            .get_or_insert_with(|| "Cluster".into());
    }
    if spec.type_.as_deref() == Some("LoadBalancer") {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
    if spec.type_.as_deref() == Some("ExternalName") {
        // An ExternalName Service is a DNS name: no cluster IP, no families.
        spec.ip_families = None;
        spec.ip_family_policy = None;
    }
    for port in spec.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".into());
        port.target_port.get_or_insert(IntOrString::Int(port.port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(labels: Value) -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}
            }
        })
    }

    #[test]
    fn deployments_get_the_defaults_kubectl_expects() {
        let d = normalize(Kind::Deployment, deployment(json!({"app": "web"}))).unwrap();
        assert_eq!(d["apiVersion"], "apps/v1");
        assert_eq!(d["kind"], "Deployment");
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn latest_or_untagged_images_are_always_pulled() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("registry:5000/nginx", "Always"),
            ("registry:5000/nginx:1", "IfNotPresent"),
            ("nginx@sha256:abc", "IfNotPresent"),
        ] {
            let mut spec = PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            };
            default_pod_spec(&mut spec, "spec", &mut Causes::new());
            assert_eq!(
                spec.containers[0].image_pull_policy.as_deref(),
                Some(policy),
                "{image}"
            );
        }
    }

    #[test]
    fn a_selector_that_misses_the_template_is_invalid() {
        let error = normalize(Kind::Deployment, deployment(json!({"app": "other"}))).unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(error.reason, "Invalid");
        assert!(
            error
                .message
                .contains("`selector` does not match template `labels`")
        );
    }

    #[test]
    fn wrong_kinds_and_bad_names_are_refused() {
        let mut wrong = deployment(json!({"app": "web"}));
        wrong["kind"] = json!("Pod");
        assert_eq!(normalize(Kind::Deployment, wrong).unwrap_err().code, 400);
        let mut bad = deployment(json!({"app": "web"}));
        bad["metadata"]["name"] = json!("Web_1");
        assert_eq!(normalize(Kind::Deployment, bad).unwrap_err().code, 422);
    }

    #[test]
    fn probes_hooks_and_volumes_get_the_api_server_defaults() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{
                    "name": "app", "image": "web:1",
                    "readinessProbe": {"httpGet": {"port": 8080}},
                    "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                    "startupProbe": {"grpc": {"port": 9000}},
                    "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}},
                    "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                }],
                "volumes": [{"name": "scratch"}, {"name": "config", "configMap": {"name": "c"}}],
            }
        });
        let pod = normalize(Kind::Pod, pod).unwrap();
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
                   "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["livenessProbe"]["periodSeconds"], 5);
        assert_eq!(c["livenessProbe"]["timeoutSeconds"], 1);
        assert_eq!(c["startupProbe"]["grpc"]["service"], "");
        assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["path"], "/stop");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
        assert_eq!(pod["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(pod["spec"]["volumes"][1]["configMap"]["defaultMode"], 420);
        let spec = &pod["spec"];
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        let tolerations = spec["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(
            tolerations[0],
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        );
        assert_eq!(
            qos_class(&serde_json::from_value(pod["spec"].clone()).unwrap()),
            "Guaranteed"
        );
        // Defaulting twice changes nothing (a re-applied manifest is no change).
        assert_eq!(normalize(Kind::Pod, pod.clone()).unwrap(), pod);
    }

    #[test]
    fn templates_get_probe_defaults_but_not_the_pod_only_ones() {
        let mut d = deployment(json!({"app": "web"}));
        d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
            json!({"httpGet": {"port": 80}});
        let d = normalize(Kind::Deployment, d).unwrap();
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"][0]["readinessProbe"]["failureThreshold"],
            3
        );
        assert!(spec.get("tolerations").is_none());
        assert!(spec.get("enableServiceLinks").is_none());
        assert!(spec.get("serviceAccountName").is_none());
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let spec = |resources: Value| -> PodSpec {
            serde_json::from_value(json!({"containers": [{"name": "a", "resources": resources}]}))
                .unwrap()
        };
        assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
    }
}
