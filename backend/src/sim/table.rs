//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for when
//! it shows `kubectl get` output, with the columns the real API server
//! prints for each kind.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// A Table of `objects` (all of one kind), or `None` for an empty slice of
/// unknown kind.
pub fn for_objects(objects: &[Value], resource_version: Option<u64>) -> Option<Value> {
    let kind = objects
        .first()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string());
    let columns: &[(&str, &str)] = match kind.as_deref() {
        Some("Deployment") => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Age", "string"),
        ],
        Some("ReplicaSet") => &[
            ("Name", "string"),
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
            ("Age", "string"),
        ],
        Some("Pod") => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
        ],
        Some("Service") => &[
            ("Name", "string"),
            ("Type", "string"),
            ("Cluster-IP", "string"),
            ("External-IP", "string"),
            ("Port(s)", "string"),
            ("Age", "string"),
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
            ("Message", "string"),
        ],
        // An empty list: kubectl prints "No resources found" from any table.
        None => &[("Name", "string"), ("Age", "string")],
        Some(other) => return Some(more_kinds_table(other, objects, resource_version)),
    };
    let column_definitions: Vec<Value> = columns
        .iter()
        .map(|(name, type_)| {
            json!({
                "name": name,
                "type": type_,
                "format": if *name == "Name" { "name" } else { "" },
                "description": "",
                "priority": 0,
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
            let status = if phase.is_empty() { "Pending" } else { phase };
            vec![
                name.into(),
                format!("{ready}/{total}").into(),
                status.into(),
                restarts.to_string().into(),
                age.into(),
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
                            format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let cluster_ip = text(o, "/spec/clusterIP");
            vec![
                name.into(),
                text(o, "/spec/type").into(),
                if cluster_ip.is_empty() {
                    "<none>"
                } else {
                    cluster_ip
                }
                .into(),
                "<none>".into(),
                if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }
                .into(),
                age.into(),
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
            let seen = [
                "/lastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .map(|p| text(o, p))
            .find(|t| !t.is_empty())
            .unwrap_or_default();
            let message = o
                .get("message")
                .or_else(|| o.get("note"))
                .and_then(Value::as_str)
                .unwrap_or_default();
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
                message.into(),
            ]
        }
        _ => vec![name.into(), text(o, "/status/phase").into(), age.into()],
    }
}

/// The columns of the kinds below: `(name, type, priority)`; priority 1
/// columns are the ones `-o wide` adds.
fn more_kinds_columns(kind: &str) -> &'static [(&'static str, &'static str, u8)] {
    match kind {
        "ConfigMap" => &[
            ("Name", "string", 0),
            ("Data", "string", 0),
            ("Age", "string", 0),
        ],
        "Secret" => &[
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Data", "string", 0),
            ("Age", "string", 0),
        ],
        "ServiceAccount" => &[
            ("Name", "string", 0),
            ("Secrets", "string", 0),
            ("Age", "string", 0),
        ],
        "Endpoints" => &[
            ("Name", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "EndpointSlice" => &[
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "Node" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "CustomResourceDefinition" => &[("Name", "string", 0), ("Created At", "date", 0)],
        // Custom resources (without printer columns of their own).
        _ => &[("Name", "string", 0), ("Age", "string", 0)],
    }
}

/// The Table of the kinds served besides workloads: configuration, nodes,
/// endpoints, definitions and custom resources.
fn more_kinds_table(kind: &str, objects: &[Value], resource_version: Option<u64>) -> Value {
    let column_definitions: Vec<Value> = more_kinds_columns(kind)
        .iter()
        .map(|(name, type_, priority)| {
            json!({
                "name": name,
                "type": type_,
                "format": if *name == "Name" { "name" } else { "" },
                "description": "",
                "priority": priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": more_kinds_cells(kind, o), "object": partial_metadata(o)}))
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.to_string().into();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

fn count(o: &Value, pointer: &str) -> usize {
    match o.pointer(pointer) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

/// `a,b,c + 2 more...`, as kubectl's printers shorten lists.
fn first_three(items: Vec<String>) -> String {
    match items.len() {
        0 => "<none>".into(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

fn more_kinds_cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = text(o, "/metadata/name");
    let age = age(text(o, "/metadata/creationTimestamp"));
    match kind {
        "ConfigMap" => vec![
            name.into(),
            (count(o, "/data") + count(o, "/binaryData")).into(),
            age.into(),
        ],
        "Secret" => vec![
            name.into(),
            text(o, "/type").into(),
            count(o, "/data").into(),
            age.into(),
        ],
        "ServiceAccount" => vec![name.into(), count(o, "/secrets").into(), age.into()],
        "Endpoints" => {
            let mut addresses = Vec::new();
            for subset in o["subsets"].as_array().into_iter().flatten() {
                let ports: Vec<i64> = subset["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["port"].as_i64())
                    .collect();
                for address in subset["addresses"].as_array().into_iter().flatten() {
                    let ip = address["ip"].as_str().unwrap_or_default();
                    if ports.is_empty() {
                        addresses.push(ip.to_string());
                    }
                    addresses.extend(ports.iter().map(|p| format!("{ip}:{p}")));
                }
            }
            vec![name.into(), first_three(addresses).into(), age.into()]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = o["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64().map(|p| p.to_string()))
                .collect();
            let addresses: Vec<String> = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            vec![
                name.into(),
                text(o, "/addressType").into(),
                if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                }
                .into(),
                first_three(addresses).into(),
                age.into(),
            ]
        }
        "Node" => {
            let ready = o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map_or("Unknown", |c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else if c["status"] == "False" {
                        "NotReady"
                    } else {
                        "Unknown"
                    }
                });
            let mut status = ready.to_string();
            if o.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let mut roles: Vec<&str> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .collect();
            roles.sort_unstable();
            let address = |type_: &str| {
                o["status"]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"] == type_)
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or("<none>")
                    .to_string()
            };
            vec![
                name.into(),
                status.into(),
                if roles.is_empty() {
                    "<none>".to_string()
                } else {
                    roles.join(",")
                }
                .into(),
                age.into(),
                text(o, "/status/nodeInfo/kubeletVersion").into(),
                address("InternalIP").into(),
                address("ExternalIP").into(),
                text(o, "/status/nodeInfo/osImage").into(),
                text(o, "/status/nodeInfo/kernelVersion").into(),
                text(o, "/status/nodeInfo/containerRuntimeVersion").into(),
            ]
        }
        "CustomResourceDefinition" => {
            vec![name.into(), text(o, "/metadata/creationTimestamp").into()]
        }
        _ => vec![name.into(), age.into()],
    }
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
}
