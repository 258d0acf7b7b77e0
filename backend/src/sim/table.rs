//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for when
//! it shows `kubectl get` output, with the columns the real API server
//! prints for each kind (Kubernetes' `pkg/printers/internalversion`). As
//! there, every row carries the wide columns too (priority 1), which
//! kubectl shows only with `-o wide`.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// A Table of `objects` (all of one kind), or `None` for an empty slice of
/// unknown kind.
pub fn for_objects(objects: &[Value], resource_version: Option<u64>) -> Option<Value> {
    let kind = objects
        .first()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string());
    if let Some(table) = kind
        .as_deref()
        .and_then(|k| super::kinds_table::for_objects(k, objects, resource_version))
    {
        return Some(table);
    }
    let columns: &[(&str, &str)] = match kind.as_deref() {
        Some("Deployment") => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Age", "string"),
            ("Containers", "string"),
            ("Images", "string"),
            ("Selector", "string"),
        ],
        Some("ReplicaSet") => &[
            ("Name", "string"),
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
            ("Age", "string"),
            ("Containers", "string"),
            ("Images", "string"),
            ("Selector", "string"),
        ],
        Some("Pod") => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
            ("IP", "string"),
            ("Node", "string"),
            ("Nominated Node", "string"),
            ("Readiness Gates", "string"),
        ],
        Some("Service") => &[
            ("Name", "string"),
            ("Type", "string"),
            ("Cluster-IP", "string"),
            ("External-IP", "string"),
            ("Port(s)", "string"),
            ("Age", "string"),
            ("Selector", "string"),
        ],
        Some("Ingress") => &[
            ("Name", "string"),
            ("Class", "string"),
            ("Hosts", "string"),
            ("Address", "string"),
            ("Ports", "string"),
            ("Age", "string"),
        ],
        Some("Namespace") => &[("Name", "string"), ("Status", "string"), ("Age", "string")],
        Some("Event") => &[
            ("Last Seen", "string"),
            ("Type", "string"),
            ("Reason", "string"),
            ("Object", "string"),
            ("Subobject", "string"),
            ("Source", "string"),
            ("Message", "string"),
            ("First Seen", "string"),
            ("Count", "string"),
            ("Name", "string"),
        ],
        // An empty list: kubectl prints "No resources found" from any table.
        None => &[("Name", "string"), ("Age", "string")],
        Some(_) => return None,
    };
    let wide = wide_columns(kind.as_deref());
    let column_definitions: Vec<Value> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, type_))| {
            json!({
                "name": name,
                "type": type_,
                "format": if *name == "Name" { "name" } else { "" },
                "description": "",
                "priority": i32::from(wide.contains(&i)),
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": cells(o), "object": partial_metadata(o)}))
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.to_string().into();
    }
    Some(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    }))
}

/// The positions of the columns `kubectl get` shows only with `-o wide`.
fn wide_columns(kind: Option<&str>) -> &'static [usize] {
    match kind {
        Some("Deployment" | "ReplicaSet") => &[5, 6, 7],
        Some("Pod") => &[5, 6, 7, 8],
        Some("Service") => &[6],
        Some("Event") => &[4, 5, 7, 8, 9],
        _ => &[],
    }
}

/// `CONTAINERS` and `IMAGES` of a pod template: names and images, each
/// joined with commas.
fn template_containers(o: &Value) -> (String, String) {
    let containers = o
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| c[field].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    };
    (join("name"), join("image"))
}

/// A label selector as `kubectl` prints it: `app=web,tier in (a,b)`, or
/// `<none>` for an empty one.
fn selector(o: &Value) -> String {
    let parsed = o
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .map(|s| super::api::selector_string(&s))
        .unwrap_or_default();
    if parsed.is_empty() {
        "<none>".into()
    } else {
        parsed
    }
}

/// `key=value,…` of a plain label map (a Service's selector), sorted by
/// key; `<none>` when empty.
fn label_map(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

fn or_none(value: &str) -> Value {
    if value.is_empty() { "<none>" } else { value }.into()
}

fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"],
    })
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The first of `pointers` that holds non-empty text (Event fields moved
/// between the two Event APIs).
fn first_text<'a>(object: &'a Value, pointers: &[&str]) -> &'a str {
    pointers
        .iter()
        .map(|p| text(object, p))
        .find(|t| !t.is_empty())
        .unwrap_or_default()
}

fn cells(o: &Value) -> Vec<Value> {
    let name = text(o, "/metadata/name");
    let age = age(text(o, "/metadata/creationTimestamp"));
    match text(o, "/kind") {
        "Deployment" => vec![
            name.into(),
            format!(
                "{}/{}",
                int(o, "/status/readyReplicas"),
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )
            .into(),
            int(o, "/status/updatedReplicas").into(),
            int(o, "/status/availableReplicas").into(),
            age.into(),
            template_containers(o).0.into(),
            template_containers(o).1.into(),
            selector(o).into(),
        ],
        "ReplicaSet" => vec![
            name.into(),
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .into(),
            int(o, "/status/replicas").into(),
            int(o, "/status/readyReplicas").into(),
            age.into(),
            template_containers(o).0.into(),
            template_containers(o).1.into(),
            selector(o).into(),
        ],
        "Pod" => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            let restarts: i64 = statuses.map_or(0, |s| {
                s.iter()
                    .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                    .sum()
            });
            let phase = text(o, "/status/phase");
            let status = if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else if phase.is_empty() {
                "Pending"
            } else {
                phase
            };
            let ip = o
                .pointer("/status/podIPs/0/ip")
                .or_else(|| o.pointer("/status/podIP"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            vec![
                name.into(),
                format!("{ready}/{total}").into(),
                status.into(),
                restarts.to_string().into(),
                age.into(),
                or_none(ip),
                or_none(text(o, "/spec/nodeName")),
                or_none(text(o, "/status/nominatedNodeName")),
                readiness_gates(o).into(),
            ]
        }
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| {
                            let protocol = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_u64().filter(|n| *n > 0) {
                                Some(node) => format!("{}:{node}/{protocol}", p["port"]),
                                None => format!("{}/{protocol}", p["port"]),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let cluster_ip = text(o, "/spec/clusterIP");
            // What kubectl prints as EXTERNAL-IP.
            let external = match text(o, "/spec/type") {
                "ExternalName" => or_none(text(o, "/spec/externalName")),
                "LoadBalancer" => {
                    let ingress: Vec<&str> = o
                        .pointer("/status/loadBalancer/ingress")
                        .and_then(Value::as_array)
                        .map(|i| {
                            i.iter()
                                .filter_map(|e| e["ip"].as_str().or(e["hostname"].as_str()))
                                .collect()
                        })
                        .unwrap_or_default();
                    if ingress.is_empty() {
                        "<pending>".into()
                    } else {
                        ingress.join(",").into()
                    }
                }
                _ => "<none>".into(),
            };
            vec![
                name.into(),
                text(o, "/spec/type").into(),
                if cluster_ip.is_empty() {
                    "<none>"
                } else {
                    cluster_ip
                }
                .into(),
                external,
                if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }
                .into(),
                age.into(),
                label_map(o.pointer("/spec/selector")).into(),
            ]
        }
        "Ingress" => {
            let hosts: Vec<&str> = o
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .map(|rules| rules.iter().filter_map(|r| r["host"].as_str()).collect())
                .unwrap_or_default();
            let class = text(o, "/spec/ingressClassName");
            vec![
                name.into(),
                if class.is_empty() { "<none>" } else { class }.into(),
                if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }
                .into(),
                "".into(),
                "80".into(),
                age.into(),
            ]
        }
        "Event" => {
            // Core events name their object `involvedObject`, events.k8s.io
            // ones `regarding`.
            let object = o
                .get("involvedObject")
                .or_else(|| o.get("regarding"))
                .unwrap_or(&Value::Null);
            let seen = first_text(
                o,
                &[
                    "/lastTimestamp",
                    "/eventTime",
                    "/metadata/creationTimestamp",
                ],
            );
            let message = o
                .get("message")
                .or_else(|| o.get("note"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let first_seen = first_text(
                o,
                &[
                    "/firstTimestamp",
                    "/eventTime",
                    "/metadata/creationTimestamp",
                ],
            );
            let component = first_text(
                o,
                &[
                    "/source/component",
                    "/deprecatedSource/component",
                    "/reportingController",
                ],
            );
            let host = first_text(
                o,
                &[
                    "/source/host",
                    "/deprecatedSource/host",
                    "/reportingInstance",
                ],
            );
            let source = if host.is_empty() {
                component.to_string()
            } else {
                format!("{component}, {host}")
            };
            let count = o
                .pointer("/series/count")
                .or_else(|| o.get("count"))
                .or_else(|| o.get("deprecatedCount"))
                .and_then(Value::as_i64)
                .filter(|c| *c > 0)
                .unwrap_or(1);
            vec![
                self::age(seen).into(),
                text(o, "/type").into(),
                text(o, "/reason").into(),
                format!(
                    "{}/{}",
                    object["kind"].as_str().unwrap_or_default().to_lowercase(),
                    object["name"].as_str().unwrap_or_default()
                )
                .into(),
                object["fieldPath"].as_str().unwrap_or_default().into(),
                source.into(),
                message.trim().into(),
                self::age(first_seen).into(),
                count.into(),
                name.into(),
            ]
        }
        _ => vec![name.into(), text(o, "/status/phase").into(), age.into()],
    }
}

/// `READINESS GATES`: how many of the pod's readiness gates have a True
/// condition, as `1/2`; `<none>` without gates.
fn readiness_gates(o: &Value) -> String {
    let gates = o
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let met = gates
        .iter()
        .filter(|g| {
            conditions
                .iter()
                .find(|c| c["type"] == g["conditionType"])
                .is_some_and(|c| c["status"] == "True")
        })
        .count();
    format!("{met}/{}", gates.len())
}

/// `5s`, `3m`, `2h`, `4d` since an RFC 3339 time.
pub(super) fn age(since: &str) -> String {
    let Ok(then) = since.parse::<Timestamp>() else {
        return "<unknown>".into();
    };
    let seconds = Timestamp::now().as_second() - then.as_second();
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_print_ready_over_desired() {
        let d = json!({"kind": "Deployment", "metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
                       "spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let table = for_objects(&[d], Some(7)).unwrap();
        assert_eq!(table["rows"][0]["cells"][0], "web");
        assert_eq!(table["rows"][0]["cells"][1], "2/3");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
        assert!(
            table["rows"][0]["cells"][4]
                .as_str()
                .unwrap()
                .ends_with('d')
        );
    }

    #[test]
    fn wide_columns_are_priority_one_and_carry_pod_ip_node_and_images() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "web-1"},
                         "spec": {"nodeName": "sim-node-1", "containers": [{"name": "app"}],
                                  "readinessGates": [{"conditionType": "example.com/ok"}]},
                         "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
                                    "conditions": [{"type": "example.com/ok", "status": "True"}]}});
        let table = for_objects(&[pod], None).unwrap();
        let names: Vec<(&str, i64)> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            names[4..],
            [
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
        );
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[5], "10.1.0.5");
        assert_eq!(cells[6], "sim-node-1");
        assert_eq!(cells[7], "<none>");
        assert_eq!(cells[8], "1/1");

        let d = json!({"kind": "Deployment", "metadata": {"name": "web"},
                       "spec": {"selector": {"matchLabels": {"tier": "a", "app": "web"}},
                                "template": {"spec": {"containers": [
                                    {"name": "app", "image": "web:1"}, {"name": "proxy", "image": "envoy:2"}]}}}});
        let table = for_objects(&[d], None).unwrap();
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[5], "app,proxy");
        assert_eq!(cells[6], "web:1,envoy:2");
        assert_eq!(cells[7], "app=web,tier=a");
        assert_eq!(table["columnDefinitions"][6]["name"], "Images");
        assert_eq!(table["columnDefinitions"][6]["priority"], 1);
        assert_eq!(table["columnDefinitions"][4]["priority"], 0);

        let svc = json!({"kind": "Service", "metadata": {"name": "web"},
                         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "web"}}});
        let table = for_objects(&[svc], None).unwrap();
        assert_eq!(table["rows"][0]["cells"][6], "app=web");
        assert_eq!(table["columnDefinitions"][6]["name"], "Selector");

        let ns = json!({"kind": "Namespace", "metadata": {"name": "prod"}, "status": {"phase": "Active"}});
        let table = for_objects(&[ns], None).unwrap();
        assert!(
            table["columnDefinitions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["priority"] == 0)
        );
    }
}
