use prost_reflect::prost::Message as _;
use prost_reflect::{DynamicMessage, MapKey, Value as V};
use serde_json::{Value, json};

use super::*;

/// A message of `name` with the fields of `fields`, the protobuf shapes
/// written as JSON: objects are messages or maps, arrays repeated fields.
fn build(name: &str, fields: &Value) -> DynamicMessage {
    let descriptor = pool().get_message_by_name(name).expect(name);
    let mut message = DynamicMessage::new(descriptor.clone());
    for (key, value) in fields.as_object().expect("fields are an object") {
        let field = descriptor
            .get_field_by_name(key)
            .unwrap_or_else(|| panic!("{name} has no field {key}"));
        message.set_field(&field, value_of(&field, value));
    }
    message
}

fn value_of(field: &prost_reflect::FieldDescriptor, value: &Value) -> V {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!()
        };
        let value_field = entry.map_entry_value_field();
        let map = value
            .as_object()
            .expect("a map is an object")
            .iter()
            .map(|(k, v)| (MapKey::String(k.clone()), single(&value_field, v)))
            .collect();
        return V::Map(map);
    }
    if field.is_list() {
        let items = value.as_array().expect("a list is an array");
        return V::List(items.iter().map(|v| single(field, v)).collect());
    }
    single(field, value)
}

fn single(field: &prost_reflect::FieldDescriptor, value: &Value) -> V {
    match field.kind() {
        Kind::Message(m) => V::Message(build(m.full_name(), value)),
        Kind::String => V::String(value.as_str().expect("a string").into()),
        Kind::Bytes => V::Bytes(
            value
                .as_str()
                .expect("bytes as text")
                .as_bytes()
                .to_vec()
                .into(),
        ),
        Kind::Bool => V::Bool(value.as_bool().expect("a bool")),
        Kind::Int32 => V::I32(value.as_i64().expect("a number") as i32),
        Kind::Int64 => V::I64(value.as_i64().expect("a number")),
        Kind::Double => V::F64(value.as_f64().expect("a number")),
        other => panic!("no test values of kind {other:?}"),
    }
}

/// The body kubectl sends: the magic, then `runtime.Unknown`.
fn body(api_version: &str, kind: &str, name: &str, fields: &Value) -> Vec<u8> {
    let raw = build(name, fields).encode_to_vec();
    let mut unknown = build(
        UNKNOWN,
        &json!({"typeMeta": {"apiVersion": api_version, "kind": kind}}),
    );
    unknown.set_field_by_name("raw", V::Bytes(raw.into()));
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

#[test]
fn a_deployment_reads_as_the_json_go_would_write() {
    let bytes = body(
        "apps/v1",
        "Deployment",
        "k8s.io.api.apps.v1.Deployment",
        &json!({
            "metadata": {
                "name": "web", "namespace": "", "generateName": "", "generation": 0,
                "creationTimestamp": {}, "labels": {"app": "web"},
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": 0,
                "paused": false,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                    "maxSurge": {"type": 1, "strVal": "25%"},
                    "maxUnavailable": {"type": 0, "intVal": 0},
                }},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "creationTimestamp": {}},
                    "spec": {"containers": [{
                        "name": "nginx", "image": "nginx:1.27", "stdin": false,
                        "ports": [{"containerPort": 80, "hostPort": 0, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": {"string": "500m"}}},
                    }], "terminationGracePeriodSeconds": 0},
                },
            },
            "status": {},
        }),
    );
    assert_eq!(
        decode(&bytes).unwrap(),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                    "maxSurge": "25%", "maxUnavailable": 0,
                }},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                    "spec": {"containers": [{
                        "name": "nginx", "image": "nginx:1.27",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}},
                    }], "terminationGracePeriodSeconds": 0},
                },
            },
            "status": {},
        })
    );
}

#[test]
fn secret_bytes_are_base64_and_times_are_rfc_3339() {
    let bytes = body(
        "v1",
        "Secret",
        "k8s.io.api.core.v1.Secret",
        &json!({
            "metadata": {"name": "s", "creationTimestamp": {"seconds": 1_767_225_600}},
            "data": {"token": "hunter2"},
            "immutable": false,
        }),
    );
    assert_eq!(
        decode(&bytes).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "data": {"token": "aHVudGVyMg=="},
            "immutable": false,
        })
    );
    let event = body(
        "events.k8s.io/v1",
        "Event",
        "k8s.io.api.events.v1.Event",
        &json!({"eventTime": {"seconds": 1_767_225_600, "nanos": 123_456_789}}),
    );
    assert_eq!(
        decode(&event).unwrap()["eventTime"],
        "2026-01-01T00:00:00.123456Z"
    );
}

#[test]
fn reviews_and_services_decode_too() {
    let review = body(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "k8s.io.api.authorization.v1.SelfSubjectAccessReview",
        &json!({"spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}}),
    );
    assert_eq!(
        decode(&review).unwrap()["spec"],
        json!({"resourceAttributes": {"verb": "list", "resource": "pods"}})
    );
    let service = body(
        "v1",
        "Service",
        "k8s.io.api.core.v1.Service",
        &json!({"spec": {"type": "ClusterIP", "ports": [{
            "name": "5678-8080", "port": 5678, "nodePort": 0,
            "targetPort": {"type": 0, "intVal": 8080},
        }]}}),
    );
    assert_eq!(
        decode(&service).unwrap()["spec"],
        json!({"type": "ClusterIP", "ports": [{"name": "5678-8080", "port": 5678, "targetPort": 8080}]})
    );
}

#[test]
fn cluster_roles_bindings_and_budgets_decode_from_their_groups() {
    let role = body(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "k8s.io.api.rbac.v1.ClusterRole",
        &json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
    );
    assert_eq!(
        decode(&role).unwrap()["rules"],
        json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])
    );
    let binding = body(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "k8s.io.api.rbac.v1.ClusterRoleBinding",
        &json!({
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        }),
    );
    assert_eq!(decode(&binding).unwrap()["roleRef"]["name"], "view");
    let budget = body(
        "policy/v1",
        "PodDisruptionBudget",
        "k8s.io.api.policy.v1.PodDisruptionBudget",
        &json!({"spec": {"minAvailable": {"type": 0, "intVal": 1}}}),
    );
    assert_eq!(decode(&budget).unwrap()["spec"], json!({"minAvailable": 1}));
}

#[test]
fn bad_bodies_are_refused_with_a_reason() {
    assert!(matches!(decode(b"{}"), Err(Error::Malformed(_))));
    assert!(matches!(
        decode(b"k8s\0\xff\xff\xff"),
        Err(Error::Malformed(_))
    ));
    // An envelope whose object is cut short.
    let mut cut = body(
        "v1",
        "Namespace",
        "k8s.io.api.core.v1.Namespace",
        &json!({"metadata": {"name": "a-long-enough-name"}}),
    );
    cut.truncate(cut.len() - 4);
    assert!(matches!(decode(&cut), Err(Error::Malformed(_))));
    let job = body(
        "batch/v1",
        "Job",
        "k8s.io.api.core.v1.Namespace",
        &json!({"metadata": {"name": "j"}}),
    );
    assert_eq!(
        decode(&job),
        Err(Error::UnknownKind {
            api_version: "batch/v1".into(),
            kind: "Job".into()
        })
    );
    // No kind may name a message by a path of its own.
    let sneaky = body(
        "v1",
        "Namespace.spec",
        "k8s.io.api.core.v1.Namespace",
        &json!({}),
    );
    assert!(matches!(decode(&sneaky), Err(Error::UnknownKind { .. })));
    let mut gzipped = build(
        UNKNOWN,
        &json!({"typeMeta": {"apiVersion": "v1", "kind": "Namespace"}, "contentEncoding": "gzip"}),
    )
    .encode_to_vec();
    gzipped.splice(0..0, MAGIC.iter().copied());
    assert_eq!(
        decode(&gzipped),
        Err(Error::Malformed(
            "content encoding \"gzip\" is not supported".into()
        ))
    );
}

#[test]
fn durations_print_as_go_prints_them() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(999), "999ns");
    assert_eq!(go_duration(1_500), "1.5µs");
    assert_eq!(go_duration(250_000_000), "250ms");
    assert_eq!(go_duration(90_000_000_000), "1m30s");
    assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
    assert_eq!(go_duration(-2_000_000_000), "-2s");
}

#[test]
fn structs_go_embeds_inline_are_flattened() {
    let ingress = body(
        "networking.k8s.io/v1",
        "Ingress",
        "k8s.io.api.networking.v1.Ingress",
        &json!({"spec": {"rules": [{"host": "shop.example", "ingressRuleValue": {"http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}},
        }]}}}]}}),
    );
    assert_eq!(
        decode(&ingress).unwrap()["spec"]["rules"][0],
        json!({"host": "shop.example", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}},
        }]}})
    );
    let pod = body(
        "v1",
        "Pod",
        "k8s.io.api.core.v1.Pod",
        &json!({"spec": {
            "volumes": [{"name": "cfg", "volumeSource": {"configMap": {
                "localObjectReference": {"name": "settings"}, "defaultMode": 420,
            }}}],
            "containers": [{"name": "app", "readinessProbe": {
                "handler": {"httpGet": {"path": "/healthz", "port": {"type": 1, "strVal": "http"}}},
                "periodSeconds": 5,
            }}],
        }}),
    );
    let spec = &decode(&pod).unwrap()["spec"];
    assert_eq!(
        spec["volumes"][0],
        json!({"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}})
    );
    assert_eq!(
        spec["containers"][0]["readinessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5})
    );
}
