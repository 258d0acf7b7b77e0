//! Server-side printing of the kinds served besides workloads —
//! ConfigMaps, Secrets, ServiceAccounts, Endpoints, EndpointSlices, Nodes,
//! CustomResourceDefinitions, PersistentVolumeClaims, ClusterRoles,
//! ClusterRoleBindings and PodDisruptionBudgets — with the columns the real API server
//! prints (priority 1: the ones `-o wide` adds). Custom resources are
//! printed by `crd.rs`, with their definition's columns.

use serde_json::{Value, json};

use super::table::age;

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"],
    })
}

/// The columns of the kinds below: `(name, type, priority)`; priority 1
/// columns are the ones `-o wide` adds.
fn columns(kind: &str) -> Option<&'static [(&'static str, &'static str, u8)]> {
    Some(match kind {
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
        "CustomResourceDefinition" | "ClusterRole" => {
            &[("Name", "string", 0), ("Created At", "date", 0)]
        }
        "PersistentVolumeClaim" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        "ClusterRoleBinding" => &[
            ("Name", "string", 0),
            ("Role", "string", 0),
            ("Age", "string", 0),
            ("Users", "string", 1),
            ("Groups", "string", 1),
            ("ServiceAccounts", "string", 1),
        ],
        "PodDisruptionBudget" => &[
            ("Name", "string", 0),
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            ("Age", "string", 0),
        ],
        _ => return None,
    })
}

/// The Table of `objects` (all of `kind`), when `kind` is one of this
/// module's.
pub fn for_objects(kind: &str, objects: &[Value], resource_version: Option<u64>) -> Option<Value> {
    let column_definitions: Vec<Value> = columns(kind)?
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
        .map(|o| json!({"cells": cells(kind, o), "object": partial_metadata(o)}))
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

/// `RWO,RWX`: access modes as kubectl abbreviates them.
fn access_modes(modes: &Value) -> String {
    modes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn or_unset(value: &str) -> &str {
    if value.is_empty() { "<unset>" } else { value }
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
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
        "CustomResourceDefinition" | "ClusterRole" => {
            vec![name.into(), text(o, "/metadata/creationTimestamp").into()]
        }
        "PersistentVolumeClaim" => {
            let bound = o["status"]["phase"] == "Bound";
            // What is bound shows; a pending claim leaves them empty.
            let (volume, capacity, modes) = if bound {
                (
                    text(o, "/spec/volumeName"),
                    text(o, "/status/capacity/storage").to_string(),
                    access_modes(&o["status"]["accessModes"]),
                )
            } else {
                ("", String::new(), String::new())
            };
            vec![
                name.into(),
                text(o, "/status/phase").into(),
                volume.into(),
                capacity.into(),
                modes.into(),
                text(o, "/spec/storageClassName").into(),
                or_unset(text(o, "/spec/volumeAttributesClassName")).into(),
                age.into(),
                or_unset(text(o, "/spec/volumeMode")).into(),
            ]
        }
        "ClusterRoleBinding" => {
            let subjects = |kind: &str| -> String {
                o["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["kind"] == kind)
                    .map(|s| match s["namespace"].as_str() {
                        Some(ns) if kind == "ServiceAccount" => {
                            format!("{ns}/{}", s["name"].as_str().unwrap_or_default())
                        }
                        _ => s["name"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name.into(),
                format!("{}/{}", text(o, "/roleRef/kind"), text(o, "/roleRef/name")).into(),
                age.into(),
                subjects("User").into(),
                subjects("Group").into(),
                subjects("ServiceAccount").into(),
            ]
        }
        "PodDisruptionBudget" => {
            let threshold = |pointer: &str| match o.pointer(pointer) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".into(),
            };
            vec![
                name.into(),
                threshold("/spec/minAvailable").into(),
                threshold("/spec/maxUnavailable").into(),
                o["status"]["disruptionsAllowed"]
                    .as_i64()
                    .unwrap_or(0)
                    .into(),
                age.into(),
            ]
        }
        _ => vec![name.into(), age.into()],
    }
}
